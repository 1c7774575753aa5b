"""Build a Lightning Trainer from `cfg.trainer` (every key is a Trainer argument)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rspnet.errors import ConfigError
from rspnet.utils.curves import LearningCurves
from rspnet.utils.loggers import quiet_lightning, wandb_logger
from rspnet.utils.wandb_media import WandbMedia


def build_trainer(
    cfg: DictConfig, out: Path, logger: Any, callbacks: list | None = None, **overrides: Any
) -> pl.Trainer:
    """Return `pl.Trainer(**cfg.trainer)` writing under `out` with exactly `callbacks`, `overrides` applied last.

    Nothing is added behind the caller's back: stages pass `run_callbacks(cfg, out, logger)` themselves.
    """
    quiet_lightning()  # before the Trainer: it logs Lightning's tips while it is built
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.setdefault("default_root_dir", str(out))
    kwargs.update(overrides)
    _check_deterministic(kwargs)
    try:
        return pl.Trainer(logger=logger, callbacks=list(callbacks or []), **kwargs)
    except TypeError as e:
        raise ConfigError(f"trainer: {e}; every trainer.* key must be a Lightning Trainer argument") from e
    except (ValueError, pl.utilities.exceptions.MisconfigurationException) as e:
        raise ConfigError(f"trainer: {e}") from e


def run_callbacks(cfg: DictConfig, out: Path, logger: Any) -> list:
    """The callbacks every fitting stage runs with: the configured `callbacks.*`, the learning curves, and W&B media
    with a W&B logger."""
    callbacks = [*user_callbacks(cfg, logger), LearningCurves(out)]
    if wandb_logger(logger) is not None:  # prediction overlays, stage pictures, artifacts
        callbacks.append(WandbMedia(out))
    return callbacks


def user_callbacks(cfg: DictConfig, logger: Any) -> list:
    """Instantiate the `callbacks.<name>` entries (`_target_` configs); null entries are dropped."""
    out = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None:
            continue
        if not isinstance(spec, DictConfig) or "_target_" not in spec:
            raise ConfigError(
                f"callbacks.{name}: expected a config with a _target_ (a Lightning callback class) or null"
            )
        if str(spec._target_).endswith("LearningRateMonitor") and not logger:
            continue  # it raises without a logger, and there is nothing to log to
        try:
            out.append(instantiate(spec, _convert_="all"))
        except InstantiationException as e:
            raise ConfigError(f"callbacks.{name} ({spec._target_}): {str(e).splitlines()[0]}") from e
    return out


def _check_deterministic(kwargs: dict[str, Any]) -> None:
    """`deterministic=true` on a GPU fails deep inside backward; say so up front (docs/reliability.md)."""
    accel = str(kwargs.get("accelerator", "auto"))
    on_gpu = accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
    if kwargs.get("deterministic") is True and on_gpu:
        raise ConfigError(
            "trainer.deterministic=true cannot run on a GPU: bilinear-upsampling backward and NLL loss "
            "have no deterministic CUDA kernels; use trainer.deterministic=warn (see docs/reliability.md)"
        )


# strategies whose ranks Lightning starts with `_SubprocessScriptLauncher`, i.e. by re-running
# `sys.argv` (ddp and its variants, fsdp, deepspeed, model_parallel); *_spawn/fork/notebook
# start them from the calling process instead
RELAUNCHING = ("ddp", "fsdp", "deepspeed", "model_parallel")
IN_PROCESS = ("spawn", "fork", "notebook")


def _device_count(devices: Any, accelerator: str) -> int | None:
    """Devices a `trainer.devices` value asks for; None when it depends on the machine (`auto`, -1)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    if text.lstrip("-").isdigit() and int(text) >= 0:
        return int(text)
    return 1 if accelerator == "cpu" else None


def relaunches_script(trainer: Mapping[str, Any]) -> bool:
    """True if `trainer.*` makes Lightning start its extra ranks by re-running the command line."""
    strategy = str(trainer.get("strategy") or "auto")
    count = _device_count(trainer.get("devices", 1), str(trainer.get("accelerator", "auto")))
    if count == 1 and int(trainer.get("num_nodes") or 1) == 1:
        return False
    if strategy == "auto":  # Lightning picks `ddp` for more than one device or node
        return True
    return strategy.startswith(RELAUNCHING) and not any(k in strategy for k in IN_PROCESS)


def check_ddp_in_multirun(trainer: Mapping[str, Any], launcher_target: str) -> None:
    """`-m` with DDP over several nodes is only supported one-job-per-SLURM-task.

    On one node every launcher works: a local job whose strategy re-launches the command line runs
    as its own `rspnet` process with that job's overrides (`rspnet.utils.job_process`), whose ranks
    Lightning starts as in a single run. Other nodes would have to start the same job's ranks, which
    only the SLURM launcher arranges (ranks = SLURM tasks); a local sweep would wait for them forever.
    """
    nodes = int(trainer.get("num_nodes") or 1)
    if nodes > 1 and not launcher_target.endswith("SlurmLauncher"):
        raise ConfigError(
            f"trainer.num_nodes={nodes} in a local multirun: no launcher starts this job's ranks on the other "
            "nodes; run multi-node sweeps with hydra/launcher=slurm, or use one node (docs/scaling.md)"
        )
