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

from rspnet.data import dataset_module
from rspnet.inference import main_logits, upsample_argmax
from rspnet.models.layers import resize
from rspnet.utils.curves import CURVES_PNG
from rspnet.utils.io import read_json
from rspnet.utils.loggers import log_file_artifact, log_image
from rspnet.viz.masks import prediction_panel

# pictures the stages write into their output dir (each epoch: cell, trellis; at the end: the others)
PICTURES = ("cell.png", "trellis.png", CURVES_PNG, "alpha_evolution.png", "beta_evolution.png", "path_evolution.png")
# small JSON artifacts handed between stages; stage=train logs its checkpoint as a `model` artifact
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
        """Batch 0 of each validation (selection split): prediction | ground truth overlays of the first images."""
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        x, y = batch[0][: self.num_images], batch[1][: self.num_images]
        with torch.no_grad():
            out = pl_module(x)
        logits = main_logits(out)
        meta = getattr(pl_module, "meta", None) or {}  # SegModule: the palette it was trained with
        palette = meta.get("palette") or dataset_module(pl_module.cfg).PALETTE
        # shown at the label's resolution, as scored (the input may be resized: dataset.resize_long / eval_scale)
        preds = upsample_argmax(logits, y.shape[-2:])
        x = x if x.shape[-2:] == y.shape[-2:] else resize(x, y.shape[-2:])
        for i, (img, pred, target) in enumerate(zip(x, preds, y)):
            log_image(
                trainer.loggers,
                f"select/prediction_{i}",
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
        for name, kind in ARTIFACTS.items():
            log_file_artifact(trainer.loggers, self.out / name, kind)

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
                prefix = "curves" if name == CURVES_PNG else "arch"
                log_image(trainer.loggers, f"{prefix}/{path.stem}", _rgb(im), step=trainer.global_step)


def log_eval_media(logger: Any, metrics: dict, out: Path) -> None:
    """stage=eval on W&B: per-class IoU / accuracy table, confusion matrix (counts table and picture), summary."""
    import wandb  # here: importing wandb takes about a second; only W&B runs get this far

    run = logger.experiment
    classes = list(metrics["iou_per_class"])
    per_class = wandb.Table(
        columns=["class", "iou", "acc"],
        data=[[c, metrics["iou_per_class"][c], metrics["acc_per_class"].get(c)] for c in classes],
    )
    media: dict[str, Any] = {"eval/per_class": per_class}
    confusion = out / "confusion_matrix.json"
    if confusion.is_file():
        counts = read_json(confusion, "confusion matrix")["counts"]
        media["eval/confusion_counts"] = wandb.Table(
            columns=["ground truth", *classes], data=[[c, *row] for c, row in zip(classes, counts)]
        )
    if (out / "confusion_matrix.png").is_file():
        media["eval/confusion_matrix"] = wandb.Image(str(out / "confusion_matrix.png"))
    run.log(media)
    run.summary.update({"eval/split": metrics["split"], "eval/num_images": metrics["num_images"]})


def _rgb(im: Any) -> Any:
    """PIL image -> H x W x 3 uint8 array."""
    return np.asarray(im.convert("RGB"))
