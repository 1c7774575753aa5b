"""stage=eval: mIoU of a trained checkpoint on `split=` with the `inference` group -> DIR/metrics.json (SPEC §3).

Also, as mmsegmentation's IoUMetric: mAcc and per-class accuracy in metrics.json, and the
confusion matrix (rows: ground truth) as DIR/confusion_matrix.json and DIR/confusion_matrix.png.
The numbers go to the logger too (`eval/*`); with W&B, eval is its own run (job_type eval) in the
training run's group, using the checkpoint as a `model` artifact, with the per-class table and the
confusion matrix.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from rspnet.architecture import arch_provenance
from rspnet.data import build_datamodule
from rspnet.errors import ConfigError
from rspnet.lit.seg_module import SegModule, finite_or_none, metric_name
from rspnet.utils.checkpoint import net_name
from rspnet.utils.io import atomic_write_json
from rspnet.utils.loggers import all_loggers, build_logger, wandb_logger
from rspnet.utils.results import WriteResult
from rspnet.utils.runtime import output_dir, require
from rspnet.utils.trainer import build_trainer, run_callbacks
from rspnet.utils.wandb_media import log_eval_media
from rspnet.viz import save_figure
from rspnet.viz.heatmap import confusion_figure

log = logging.getLogger(__name__)


def check_classes(ckpt: str, meta: dict, num_classes: int, dataset: str) -> None:
    """The checkpoint's classifier must match the dataset's number of classes."""
    if int(meta["num_classes"]) != int(num_classes):
        raise ConfigError(
            f"ckpt={ckpt} predicts {meta['num_classes']} classes but dataset={dataset} has {num_classes}; "
            "evaluate on the dataset it was trained for, or fine-tune it on this one first: "
            f"stage=train train.init_ckpt={ckpt} train.init_skip=classifiers"
        )


def metrics_dict(result: dict, classes: list[str], cfg: DictConfig, ckpt: str, meta: dict | None = None) -> dict:
    """SPEC §3 metrics.json from SegModule.test_result (NaN, e.g. classes absent from GT and prediction -> null)."""
    meta = meta or {}
    # checkpoints older than the provenance key: read it from the stored artifacts (None if absent)
    provenance = meta.get("arch_provenance") or arch_provenance(meta.get("genotype"), meta.get("macro"))
    return {
        "miou": finite_or_none(result["miou"]),
        "iou_per_class": {name: finite_or_none(v) for name, v in zip(classes, result["iou_per_class"].tolist())},
        "pixel_acc": finite_or_none(result["pixel_acc"]),
        "macc": finite_or_none(result["macc"]),
        "acc_per_class": {name: finite_or_none(v) for name, v in zip(classes, result["acc_per_class"].tolist())},
        "num_images": int(result["num_images"]),
        "dataset": str(cfg.dataset.name),
        "split": str(cfg.split),  # the reported split
        "checkpoint": str(Path(ckpt).resolve()),
        "net": net_name(meta),  # the network family (net group entry)
        "arch_provenance": provenance,
        "checkpoint_selected_on": (meta.get("selection") or {}).get("selected_on"),  # train.select; null for older ones
    }


def eval_result(
    classes: list[str], cfg: DictConfig, ckpt: str, meta: dict | None, trainer: pl.Trainer, module: pl.LightningModule
) -> dict:
    """metrics.json (written by WriteResult on rank 0, where the test ran), with the confusion matrix beside it."""
    result = module.test_result
    if trainer.is_global_zero:
        write_confusion(Path(str(cfg.paths.output_dir)), result["confmat"], classes)
    return metrics_dict(result, classes, cfg, ckpt, meta)


def write_confusion(out: Path, confmat: Any, classes: list[str]) -> None:
    """DIR/confusion_matrix.json (pixel counts, rows = ground truth) and its row-normalised picture."""
    counts = [[int(v) for v in row] for row in confmat.tolist()]
    atomic_write_json(
        out / "confusion_matrix.json",
        {"classes": classes, "rows": "ground truth", "columns": "prediction", "counts": counts},
    )
    save_figure(confusion_figure(counts, classes), out / "confusion_matrix.png")


def log_eval(logger: Any, metrics: dict, out: Path) -> None:
    """`eval/miou`, `eval/macc`, `eval/pixel_acc`, `eval/iou/<class>` to every logger; W&B also gets the
    per-class table and the confusion matrix (rank 0)."""
    if not logger:
        return
    scalars = {f"eval/{k}": metrics[k] for k in ("miou", "macc", "pixel_acc") if metrics[k] is not None}
    scalars |= {f"eval/iou/{metric_name(c)}": v for c, v in metrics["iou_per_class"].items() if v is not None}
    for lg in all_loggers(logger):
        lg.log_metrics(scalars, step=0)
        lg.save()
    wb = wandb_logger(logger)
    if wb is not None:
        log_eval_media(wb, metrics, out)


def run(cfg: DictConfig) -> dict:
    """Evaluate `ckpt=` on `cfg.split` and write DIR/metrics.json atomically."""
    out = output_dir(cfg)
    ckpt = require(
        cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train (e.g. DIR/checkpoints/last.ckpt)"
    )
    module, meta = SegModule.from_checkpoint(ckpt, cfg)
    dm = build_datamodule(cfg)
    dm.setup("test")
    check_classes(ckpt, meta, dm.num_classes, cfg.dataset.name)
    path = out / "metrics.json"
    for old in (path, out / "confusion_matrix.json", out / "confusion_matrix.png"):
        old.unlink(missing_ok=True)  # never report a previous run's numbers
    writer = WriteResult(path, functools.partial(eval_result, list(dm.classes), cfg, ckpt, meta), on="test")
    logger = build_logger(cfg, out)
    # the progress bar counts test batches (images / dataset.val_batch_size)
    trainer = build_trainer(
        cfg,
        out,
        logger,
        [writer, *run_callbacks(cfg, out, logger)],
        enable_checkpointing=False,
        enable_progress_bar=bool(cfg.stage.get("progress", True)),
    )
    trainer.test(module, dataloaders=dm.test_dataloader(), verbose=False)
    metrics = writer.read("metrics")
    if trainer.is_global_zero:
        log_eval(logger, metrics, out)
    miou = metrics["miou"]
    macc = metrics["macc"]
    log.info(
        "%s %s mIoU = %s, mAcc = %s (%s images, inference=%s)",
        cfg.dataset.name,
        cfg.split,
        f"{100 * miou:.2f} %" if miou is not None else "n/a",
        f"{100 * macc:.2f} %" if macc is not None else "n/a",
        metrics["num_images"],
        cfg.inference.mode,
    )
    return metrics | {"objective": miou}
