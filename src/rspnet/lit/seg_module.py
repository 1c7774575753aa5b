"""Fixed-architecture training (HRNet-OCR recipe) of an injected network.

`SegModule(net, train_cfg, ignore_index, meta)` trains whatever `net` it is given
(lightning-hydra-template's `MNISTLitModule(net, ...)`). The network of a run is built in one place,
`build_seg_module` (the `net` group's entry via `models/nets.build_net`: the rspnet derived net of a
`Genotype` + `MacroArch`, or a baseline), and `SegModule.from_checkpoint` rebuilds it from a file.
`meta` is the checkpoint's self-describing metadata (`rspnet.utils.checkpoint.seg_meta`), saved in every
checkpoint; the file format (reading, checking, strict loading) lives in `rspnet.utils.checkpoint`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ArtifactError, NonFiniteError, RSPNetError
from rspnet.inference import infer as default_infer
from rspnet.inference import infer_from_cfg, upsample_argmax
from rspnet.losses import seg_loss
from rspnet.models.layers import at_label
from rspnet.models.nets import build_net, is_searched, net_spec
from rspnet.utils.checkpoint import (
    RNG_KEY,
    check_seg_meta,
    check_state_dict,
    load_net_weights,
    net_state,
    network_cfg,
    read_checkpoint,
    rng_state,
    seg_meta,
    set_rng_state,
    stored_architecture,
)
from rspnet.utils.distributed import all_ranks_finite

if TYPE_CHECKING:
    from rspnet.genotype import Genotype, MacroArch

log = logging.getLogger(__name__)
# (net, images) -> class scores [B, K, H, W]: how test_step infers (default whole image; eval: the inference group)
Infer = Callable[[Callable[[torch.Tensor], Any], torch.Tensor], torch.Tensor]


def poly_lambda(total_steps: int, power: float) -> Callable[[int], float]:
    """lr factor `(1 - step/total) ** power`, clamped at 0 after `total_steps`."""
    return lambda step: max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power


def _as_dict(out: Any) -> dict[str, torch.Tensor]:
    """Accept nets that return a bare tensor as well as {"out", "aux"}."""
    return out if isinstance(out, dict) else {"out": out}


# the metric that picks checkpoints: mIoU on the selection split (the held-out slice of train by
# default, val with train.select=val); `val/miou` is always the val split itself
SELECT_MIOU = "select/miou"


def val_prefixes(datamodule: Any) -> list[tuple[str, ...]]:
    """Per validation loader, the metric prefixes it is logged under (`select`, `val`, or both: train.select=val)."""
    prefixes = getattr(datamodule, "val_prefixes", None)
    return list(prefixes()) if callable(prefixes) else [("select",)]


class SegModule(pl.LightningModule):
    """Trains `net` with SGD + poly lr (`train_cfg`); logs `select/miou` (and `val/miou`) every epoch; `meta` goes
    into checkpoints."""

    def __init__(
        self,
        net: nn.Module,
        train_cfg: DictConfig,
        ignore_index: int,
        meta: dict[str, Any],
        *,
        aux_weight: float = 0.0,
        loss: Mapping[str, Any] | None = None,
        infer: Infer = default_infer,
    ) -> None:
        super().__init__()
        from rspnet.metrics import SegMetric

        self.train_cfg, self.meta, self.infer = train_cfg, meta, infer
        self.num_classes = int(meta["num_classes"])
        self.ignore_index = int(ignore_index)
        self.aux_weight = float(aux_weight)
        # seg_loss's ohem / thresh / min_kept (the builder passes them; else read from train_cfg)
        self.loss_args = dict(loss if loss is not None else loss_options(train_cfg))
        weights = meta.get("class_weights")
        # a plain tensor, not a buffer: checkpoints (and their strict loading) stay those of the network
        self.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)
        self.net = net
        self.channels_last = bool(train_cfg.get("channels_last", False))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if train_cfg.get("compile", False):
            self.net.compile()  # in place: parameter names (and so checkpoints) stay those of the eager net
        self.val_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)  # the selection split
        self.monitor_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)  # val beside it
        self.test_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)
        self.test_result: dict[str, Any] | None = None
        self._test_images = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: DictConfig | None = None) -> tuple[SegModule, dict[str, Any]]:
        """Rebuild the trained module (eval mode) from a checkpoint; returns (module, checkpoint["rspnet"]).

        The network (its `net` entry, model/rsp/head, genotype + macro) always comes from the checkpoint;
        `cfg` supplies the rest (dataset, inference ...). Differences are logged, not errors.
        """
        ckpt = read_checkpoint(path)
        meta = check_seg_meta(ckpt.get("rspnet"), path)
        cfg = network_cfg(cfg, meta, path)
        try:
            module = build_seg_module(
                cfg,
                *stored_architecture(meta),
                meta["num_classes"],
                meta.get("classes"),
                meta.get("palette"),
                meta.get("class_weights"),
                meta.get("selection"),
            )
        except RSPNetError as e:  # the stored genotype/macro/config (head=nan, ...): name the checkpoint it came from
            raise type(e)(f"{path}: {e}") from e
        except Exception as e:  # noqa: BLE001 - any failure to rebuild from the stored config is the checkpoint's
            first = (str(e).splitlines() or [""])[0][:200]
            raise ArtifactError(
                f"{path}: cannot rebuild the network from its rspnet metadata ({type(e).__name__}: {first})"
            ) from e
        load_net_weights(module.net, net_state(ckpt), str(path))
        module.eval()
        return module, meta

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return _as_dict(self.net(x))

    def compute_loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """`seg_loss` with this module's explicit options, aux weight and class weights."""
        return seg_loss(
            out, y, self.ignore_index, aux_weight=self.aux_weight, weight=self.class_weights, **self.loss_args
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.compute_loss(self(x), y)
        if not all_ranks_finite(loss):  # one decision for all DDP ranks, before the backward all-reduce
            value = loss.item() if not torch.isfinite(loss) else "non-finite on another DDP rank"
            raise NonFiniteError(
                f"training loss is {value} at epoch {self.current_epoch} step {self.global_step}; "
                "lower train.lr or use trainer.precision=32-true (last.ckpt holds the last good epoch)"
            )
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # validation during training uses whole-image inference (fast); eval picks the inference group
        x, y = batch
        out = self(x)
        loss = self.compute_loss(out, y)
        for prefix in val_prefixes(self.trainer.datamodule)[dataloader_idx]:
            self.log(
                f"{prefix}/loss", loss, on_epoch=True, sync_dist=True, batch_size=x.shape[0], add_dataloader_idx=False
            )
        logits = at_label(out["out"], y)
        # W&B prediction pictures: rspnet.utils.wandb_media.WandbMedia (run_callbacks adds it)
        (self.monitor_metric if dataloader_idx else self.val_metric).update(logits.argmax(1), y)

    def on_validation_epoch_end(self) -> None:
        for metric, prefixes in zip((self.val_metric, self.monitor_metric), val_prefixes(self.trainer.datamodule)):
            res = metric.compute()
            metric.reset()
            for prefix in prefixes:
                self._log_scores(prefix, res)
            if self.trainer.is_global_zero and not self.trainer.sanity_checking:
                split = (self.meta.get("selection") or {}).get("split") or "val"
                label = f"select ({split})" if "select" in prefixes else "val (monitoring)"
                log.info("%s", per_class_line(self.current_epoch, res, self.meta["classes"], label))

    def _log_scores(self, prefix: str, res: dict[str, torch.Tensor]) -> None:
        """`<prefix>/miou`, `/pixel_acc` and `/iou/<class>` of one validation loader."""
        # compute() already reduced the confusion matrix over ranks, so the values agree on every
        # rank; sync_dist (a mean of equal values) only tells Lightning so
        miou = torch.nan_to_num(res["miou"], nan=0.0)
        self.log(f"{prefix}/miou", miou, prog_bar=prefix == "select", sync_dist=True, add_dataloader_idx=False)
        logged = {f"{prefix}/pixel_acc": torch.nan_to_num(res["pixel_acc"], nan=0.0)}
        # NaN = class absent from both ground truth and prediction (left out of the mean)
        logged |= {f"{prefix}/iou/{metric_name(n)}": v for n, v in zip(self.meta["classes"], res["iou_per_class"])}
        self.log_dict(logged, sync_dist=True, add_dataloader_idx=False)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        scores = self.infer(self, x)
        self.test_metric.update(upsample_argmax(scores, y.shape[-2:]), y)
        self._test_images += x.shape[0]

    def on_test_epoch_start(self) -> None:
        self._test_images = 0
        self.test_metric.reset()

    def on_test_epoch_end(self) -> None:
        res = self.test_metric.compute()  # synced over DDP ranks by torchmetrics
        n = self.trainer.strategy.reduce(torch.tensor(float(self._test_images), device=self.device), reduce_op="sum")
        self.test_result = {k: v.detach().cpu() for k, v in res.items()} | {"num_images": int(n)}

    def configure_optimizers(self) -> dict:
        """SGD (momentum, wd) with poly decay `(1 - step/total) ** power` per optimizer step."""
        t = self.train_cfg
        opt = torch.optim.SGD(
            self.net.parameters(), lr=float(t.lr), momentum=float(t.momentum), weight_decay=float(t.weight_decay)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(total, float(t.get("poly_power", 0.9))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rspnet"] = self.meta
        # beside the metadata: ckpt_path=last replays the same shuffles and augmentations
        checkpoint[RNG_KEY] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # runs before Lightning's strict load_state_dict: a checkpoint of another preset is one clear line
        check_state_dict(self, checkpoint["state_dict"], f"ckpt_path={self.trainer.ckpt_path}")
        if RNG_KEY in checkpoint:
            set_rng_state(checkpoint[RNG_KEY])


def metric_name(name: str) -> str:
    """A class name as a metric key part (no spaces or slashes)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def per_class_line(epoch: int, res: dict[str, torch.Tensor], names: list[str], label: str) -> str:
    """'select (holdout) epoch 3: mIoU 45.2 | sky 87.1 road 80.2 ...' (IoU in %, '-' = absent)."""
    ious = " ".join(
        f"{metric_name(n)} {'-' if math.isnan(float(v)) else f'{100 * float(v):.1f}'}"
        for n, v in zip(names, res["iou_per_class"])
    )
    return f"{label} epoch {epoch}: mIoU {100 * float(torch.nan_to_num(res['miou'])):.1f} | {ious}"


def build_seg_module(
    cfg: DictConfig,
    genotype: Genotype | None,
    macro: MacroArch | None,
    num_classes: int,
    classes: list[str] | None = None,
    palette: list | None = None,
    class_weights: list[float] | None = None,
    selection: dict[str, Any] | None = None,
) -> SegModule:
    """A SegModule around the network of `cfg.net` (stage=train, eval, predict, export): the rspnet derived net
    of `genotype` + `macro` (net=rspnet), or another family built from its entry (net=enet: no artifacts)."""
    spec = net_spec(cfg)
    if not is_searched(spec):
        genotype = macro = None
    net = build_net(cfg, spec, int(num_classes), genotype, macro)
    meta = seg_meta(
        cfg,
        net,
        num_classes,
        genotype=genotype.to_dict() if genotype is not None else None,
        macro=macro.to_dict() if macro is not None else None,
        classes=classes,
        palette=palette,
        class_weights=class_weights,
        selection=selection,
        net_spec=spec,
    )
    return SegModule(
        net,
        cfg.train,
        int(cfg.dataset.get("ignore_index", 255)),
        meta,
        aux_weight=aux_weight(cfg),
        loss=loss_options(cfg.train),
        infer=partial(infer_from_cfg, cfg=cfg),
    )


def aux_weight(cfg: DictConfig) -> float:
    """`train.aux_weight` when set, else the head's own default (`head.aux_weight`: ocr 0.4)."""
    w = cfg.train.get("aux_weight")
    return float(w if w is not None else cfg.head.get("aux_weight", 0.0) or 0.0)


def loss_options(train_cfg: DictConfig) -> dict[str, Any]:
    """`seg_loss`'s OHEM arguments from the `train` group (`ohem`, `ohem_thresh`, `ohem_min_kept`)."""
    if not train_cfg.get("ohem", False):
        return {"ohem": False}
    return {"ohem": True, "thresh": float(train_cfg.ohem_thresh), "min_kept": int(train_cfg.ohem_min_kept)}


def finite_or_none(value: float) -> float | None:
    """JSON-safe number: NaN/inf (e.g. the IoU of a class absent from GT and prediction) -> None."""
    value = float(value)
    return value if math.isfinite(value) else None
