"""Build a Lightning Trainer from `cfg.trainer` (every key is a Trainer argument)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rspnet.errors import ConfigError


def build_trainer(cfg: DictConfig, out: Path, logger: Any, callbacks: list | None = None, **overrides: Any):
    """Return `pl.Trainer(**cfg.trainer)` writing under `out`, with `overrides` applied last."""
    import pytorch_lightning as pl

    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.setdefault("default_root_dir", str(out))
    kwargs.update(overrides)
    _check_deterministic(kwargs)
    callbacks = list(callbacks or [])
    if isinstance(logger, pl.loggers.WandbLogger):  # prediction overlays, stage pictures, artifacts
        from rspnet.utils.wandb_media import WandbMedia

        callbacks.append(WandbMedia(out))
    try:
        return pl.Trainer(logger=logger, callbacks=callbacks, **kwargs)
    except TypeError as e:
        raise ConfigError(f"trainer: {e}; every trainer.* key must be a Lightning Trainer argument") from e
    except (ValueError, pl.utilities.exceptions.MisconfigurationException) as e:
        raise ConfigError(f"trainer: {e}") from e


def _check_deterministic(kwargs: dict[str, Any]) -> None:
    """`deterministic=true` on a GPU fails deep inside backward; say so up front (docs/reliability.md)."""
    import torch

    accel = str(kwargs.get("accelerator", "auto"))
    on_gpu = accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
    if kwargs.get("deterministic") is True and on_gpu:
        raise ConfigError("trainer.deterministic=true cannot run on a GPU: bilinear-upsampling backward and NLL loss "
                          "have no deterministic CUDA kernels; use trainer.deterministic=warn (see docs/reliability.md)")


def resolve_ckpt_path(cfg: DictConfig, out: Path) -> str | None:
    """`ckpt_path=last` -> `<out>/checkpoints/last.ckpt` (must exist); a path is checked."""
    value = cfg.get("ckpt_path")
    if value in (None, "", False):
        return None
    if str(value) == "last":
        path = out / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ConfigError(f"ckpt_path=last: no {path} to resume from; run without ckpt_path first")
        return str(path)
    if not Path(str(value)).is_file():
        raise ConfigError(f"ckpt_path={value}: file not found")
    return str(value)
