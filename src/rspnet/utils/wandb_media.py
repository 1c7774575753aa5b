"""W&B media for every stage: prediction overlays, the stage pictures, artifacts.

`run_callbacks` (rspnet.utils.trainer) adds `WandbMedia` whenever the logger is W&B, so the search and training
modules only log scalars (and their heatmaps) themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from rspnet.data import dataset_module
from rspnet.utils.loggers import log_image
from rspnet.viz.masks import prediction_panel

# pictures the stages write into their output dir at each epoch end
PICTURES = ("cell.png", "trellis.png")
# small JSON artifacts handed between stages (checkpoints go through WandbLogger(log_model=...))
ARTIFACTS = {"genotype.json": "genotype", "macro.json": "macro"}


class WandbMedia(pl.Callback):
    """Logs a few val prediction overlays per validation, new stage pictures, and artifacts at the end."""

    def __init__(self, out: Path, num_images: int = 4) -> None:
        self.out, self.num_images = Path(out), int(num_images)
        self._logged: dict[str, float] = {}  # picture -> mtime already logged

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Batch 0 of each validation: prediction | ground truth overlays of the first images."""
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        x, y = batch[0][: self.num_images], batch[1][: self.num_images]
        with torch.no_grad():
            out = pl_module(x)
        logits = out["out"] if isinstance(out, dict) else out
        meta = getattr(pl_module, "meta", None) or {}  # SegModule: the palette it was trained with
        palette = meta.get("palette") or dataset_module(pl_module.cfg).PALETTE
        for i, (img, pred, target) in enumerate(zip(x, logits.argmax(1), y)):
            log_image(
                trainer.logger,
                f"val/prediction_{i}",
                prediction_panel(img, pred, target, palette),
                step=trainer.global_step,
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the module exports its pictures in its own on_train_epoch_end, after the callbacks' hook
        self._log_pictures(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After fit: the last pictures, then genotype/macro JSON as W&B artifacts."""
        if stage != "fit" or not trainer.is_global_zero:
            return
        self._log_pictures(trainer)
        if not isinstance(trainer.logger, WandbLogger):
            return
        import wandb  # here: importing wandb takes about a second; only W&B runs get this far

        for name, kind in ARTIFACTS.items():
            path = self.out / name
            if path.is_file():
                artifact = wandb.Artifact(name=f"{kind}-{trainer.logger.experiment.id}", type=kind)
                artifact.add_file(str(path))
                trainer.logger.experiment.log_artifact(artifact)

    def _log_pictures(self, trainer: pl.Trainer) -> None:
        """Log each stage picture once per new version of the file."""
        if not trainer.is_global_zero:
            return
        for name in PICTURES:
            path = self.out / name
            if not path.is_file() or self._logged.get(name) == path.stat().st_mtime:
                continue
            self._logged[name] = path.stat().st_mtime
            with Image.open(path) as im:
                log_image(trainer.logger, f"arch/{path.stem}", _rgb(im), step=trainer.global_step)


def _rgb(im: Any) -> Any:
    """PIL image -> H x W x 3 uint8 array."""
    return np.asarray(im.convert("RGB"))
