"""Logger factory: `logger=wandb|csv|none`. W&B is offline unless WANDB_MODE says otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rspnet.errors import ConfigError


def build_logger(cfg: DictConfig, out: Path) -> Any:
    """Return a Lightning logger for `cfg.logger.name`, or False for `none`."""
    name = cfg.logger.get("name", "none")
    if name == "none":
        return False
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(out), name="csv", version="")
    if name == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        # one W&B run per stage: Lightning would otherwise attach to a run still open in this
        # process (an earlier pipeline stage) and log into it with that stage's config
        finish_loggers()
        from pytorch_lightning.loggers import WandbLogger

        return WandbLogger(
            project=cfg.logger.get("project", "rspnet"),
            group=cfg.logger.get("group"),
            tags=list(cfg.logger.get("tags") or []),
            job_type=cfg.logger.get("job_type"),
            entity=cfg.logger.get("entity"),
            save_dir=str(out),
            log_model=bool(cfg.logger.get("log_model", False)),
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    raise ConfigError(f"logger={name} is unknown; use logger=wandb, logger=csv or logger=none")


def finish_loggers() -> None:
    """Close any W&B run (always called, also on errors)."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a hard dependency
        return
    if wandb.run is not None:
        wandb.finish()


def log_image(logger: Any, key: str, image: Any, step: int | None = None) -> None:
    """Log an image (HxWx3 uint8 array or matplotlib figure) to W&B; other loggers skip it."""
    try:
        from pytorch_lightning.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return
    for lg in logger if isinstance(logger, (list, tuple)) else [logger]:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[image], step=step)
