"""Logger factory: `logger=wandb|csv|tensorboard|none`, each a `_target_` config instantiated by Hydra.

W&B is offline unless WANDB_MODE says otherwise; its run id is kept in the run dir so that
`ckpt_path=last` continues the same W&B run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from rspnet.errors import ConfigError
from rspnet.utils.io import atomic_write_text
from rspnet.utils.labels import run_labels

WANDB_ID_FILE = "wandb_id.txt"
# keys recipes set to group runs (W&B arguments); other loggers do not take them
RUN_LABELS = ("group", "tags")


def build_logger(cfg: DictConfig, out: Path) -> Any:
    """Instantiate `cfg.logger` (a `_target_` config) writing under `out`, or False for `logger=none`."""
    spec = cfg.get("logger")
    target = str(spec.get("_target_") or "") if isinstance(spec, DictConfig) else ""
    if not target:
        return False
    kwargs: dict[str, Any] = {"save_dir": str(out)}
    if target.endswith("WandbLogger"):
        kwargs.update(_wandb_kwargs(cfg, out))
    else:  # run labels the recipes set for every logger (kept in config.yaml for experiments.collect)
        spec = OmegaConf.masked_copy(spec, [k for k in spec if k not in RUN_LABELS])
    if target.endswith("TensorBoardLogger") and not any(
        importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")
    ):
        raise ConfigError(
            "logger=tensorboard needs the tensorboard or tensorboardX package: "
            "pip install 'rspnet[tensorboard]' (or use logger=csv)"
        )
    try:
        # partial first: `config` (the whole cfg, with its own `_target_`s) must not be instantiated
        logger = instantiate(spec, _partial_=True, _convert_="all")(**kwargs)
    except (InstantiationException, TypeError) as e:
        raise ConfigError(f"logger ({target}): {str(e).splitlines()[0]}; check the logger.* keys") from e
    if target.endswith("WandbLogger"):
        # Lightning always passes anonymous=None, which wandb >= 0.22 answers with a deprecation
        # warning on every run; leaving the key out is the same setting
        init = getattr(logger, "_wandb_init", {})
        if init.get("anonymous", False) is None:
            del init["anonymous"]
        _store_wandb_id(logger, out)
    return logger


def _wandb_kwargs(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """W&B offline by default, the resolved config, and the stored run id when resuming."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    # one W&B run per stage: Lightning would otherwise attach to a run still open in this
    # process (an earlier pipeline stage) and log into it with that stage's config
    finish_loggers()
    # a readable run name and the tags: the stage, the experiment, root `tags`, logger.tags (rspnet.utils.labels)
    kwargs: dict[str, Any] = {"config": OmegaConf.to_container(cfg, resolve=True), **run_labels(cfg)}
    stored = out / WANDB_ID_FILE
    if cfg.get("ckpt_path") and not cfg.logger.get("id") and stored.is_file():
        kwargs.update(id=stored.read_text().strip(), resume="allow")  # ckpt_path=last: the same W&B run
    return kwargs


def _store_wandb_id(logger: Any, out: Path) -> None:
    """Write the W&B run id to `<out>/wandb_id.txt` (rank 0; starting the run is what assigns it)."""
    if rank_zero_only.rank == 0:
        atomic_write_text(out / WANDB_ID_FILE, str(logger.experiment.id) + "\n")


def finish_loggers() -> None:
    """Close any W&B run (always called, also on errors)."""
    try:
        import wandb  # here: importing wandb takes about a second, and only W&B runs need it
    except ImportError:  # pragma: no cover - wandb is a hard dependency
        return
    if wandb.run is not None:
        wandb.finish()


def log_image(logger: Any, key: str, image: Any, step: int | None = None) -> None:
    """Log an image (HxWx3 uint8 array or matplotlib figure) to W&B; other loggers skip it."""
    for lg in logger if isinstance(logger, (list, tuple)) else [logger]:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[image], step=step)


# Lightning's advertisements, logged at INFO by its rank-zero logger on every Trainer
# ("💡 Tip: ... litlogger / litmodels"); only these records are dropped
_TIP_PREFIX = "💡 Tip:"
_RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
# known deprecation noise from library internals, not actionable by users: (message regex, category)
_KNOWN_NOISE = (
    # torch >= 2.10 deprecates LeafSpec, which pytorch_lightning.utilities._pytree still builds
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


class _DropTips(logging.Filter):
    """Drops Lightning's marketing tips, passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP_PREFIX)


def quiet_lightning() -> None:
    """Silence Lightning's tips and the known deprecation noise (targeted filters; idempotent)."""
    for name in _RANK_ZERO_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in lg.filters):
            lg.addFilter(_DropTips())
    for message, category in _KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
