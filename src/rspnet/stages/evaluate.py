"""stage=eval: mIoU of a trained checkpoint on `split=` with `train.inference` -> DIR/metrics.json (SPEC §3)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from rspnet.errors import ConfigError
from rspnet.utils.config import output_dir, require
from rspnet.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)


def check_classes(ckpt: str, meta: dict, num_classes: int, dataset: str) -> None:
    """The checkpoint's classifier must match the dataset's number of classes."""
    if int(meta["num_classes"]) != int(num_classes):
        raise ConfigError(f"ckpt={ckpt} predicts {meta['num_classes']} classes but dataset={dataset} has {num_classes}; "
                          "evaluate on the dataset it was trained for (or fine-tune with train.init_ckpt)")


def metrics_dict(result: dict, classes: list[str], cfg: DictConfig, ckpt: str, meta: dict | None = None) -> dict:
    """SPEC §3 metrics.json from SegModule.test_result (NaN, e.g. classes absent from GT and prediction -> null)."""
    from rspnet.genotype import arch_provenance
    from rspnet.lit.seg_module import finite_or_none

    meta = meta or {}
    # checkpoints older than the provenance key: read it from the stored artifacts (None if absent)
    provenance = meta.get("arch_provenance") or arch_provenance(meta.get("genotype"), meta.get("macro"))
    return {
        "miou": finite_or_none(result["miou"]),
        "iou_per_class": {name: finite_or_none(v) for name, v in zip(classes, result["iou_per_class"].tolist())},
        "pixel_acc": finite_or_none(result["pixel_acc"]),
        "num_images": int(result["num_images"]),
        "dataset": str(cfg.dataset.name),
        "split": str(cfg.split),
        "checkpoint": str(Path(ckpt).resolve()),
        "arch_provenance": provenance,
    }


class WriteMetrics(Callback):
    """Writes metrics.json on global rank 0 where the test ran (also inside ddp_spawn workers)."""

    def __init__(self, path: Path, classes: list[str], cfg: DictConfig, ckpt: str, meta: dict | None = None) -> None:
        self.path, self.classes, self.cfg, self.ckpt, self.meta = path, classes, cfg, ckpt, meta

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            atomic_write_json(self.path, metrics_dict(pl_module.test_result, self.classes, self.cfg, self.ckpt, self.meta))


def run_eval(cfg: DictConfig) -> dict:
    """Evaluate `ckpt=` on `cfg.split` and write DIR/metrics.json atomically."""
    from rspnet.data import build_datamodule
    from rspnet.lit.seg_module import load_seg_checkpoint
    from rspnet.utils.trainer import build_trainer

    out = output_dir(cfg)
    ckpt = require(cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train (e.g. DIR/checkpoints/last.ckpt)")
    module, meta = load_seg_checkpoint(ckpt, cfg)
    dm = build_datamodule(cfg)
    dm.setup("test")
    check_classes(ckpt, meta, dm.num_classes, cfg.dataset.name)
    path = out / "metrics.json"
    path.unlink(missing_ok=True)  # never report a previous run's numbers
    writer = WriteMetrics(path, list(dm.classes), cfg, ckpt, meta)
    trainer = build_trainer(cfg, out, False, [writer], enable_checkpointing=False, enable_progress_bar=False)
    trainer.test(module, dataloaders=dm.test_dataloader(), verbose=False)
    metrics = read_json(path, "metrics")
    miou = metrics["miou"]
    log.info("%s %s mIoU = %s (%s images, inference=%s)", cfg.dataset.name, cfg.split,
             f"{100 * miou:.2f} %" if miou is not None else "n/a", metrics["num_images"], cfg.train.inference)
    return metrics | {"objective": miou}
