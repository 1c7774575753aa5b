"""Fixed-architecture training of the derived network (HRNet-OCR recipe) and checkpoint loading.

A checkpoint is self-describing: `checkpoint["rspnet"]` holds the genotype, the macro
structure, the class names/palette and the model/rsp/head config, so eval, predict and
export rebuild the exact network from the file alone (`load_seg_checkpoint`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from rspnet.errors import ArtifactError, NonFiniteError, RSPNetError
from rspnet.losses import aux_weight, ohem_cross_entropy, seg_loss  # noqa: F401 - re-exported (losses live in rspnet.losses)
from rspnet.utils.distributed import all_ranks_finite

log = logging.getLogger(__name__)
CKPT_FORMAT = "rspnet.seg/1"
# config groups that define the network's shape; stored in (and restored from) the checkpoint
ARCH_GROUPS = ("model", "rsp", "head")


def poly_lambda(total_steps: int, power: float) -> Callable[[int], float]:
    """lr factor `(1 - step/total) ** power`, clamped at 0 after `total_steps`."""
    return lambda step: max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power


def _as_dict(out: Any) -> dict[str, torch.Tensor]:
    """Accept nets that return a bare tensor as well as {"out", "aux"}."""
    return out if isinstance(out, dict) else {"out": out}


class SegModule(pl.LightningModule):
    """Trains `self.net = build_derived(...)` with SGD + poly lr; logs `val/miou` every epoch."""

    def __init__(self, cfg: DictConfig, genotype: dict, macro: dict, num_classes: int,
                 classes: list[str] | None = None, palette: list | None = None,
                 class_weights: list[float] | None = None, selection: dict[str, Any] | None = None) -> None:
        super().__init__()
        from rspnet.genotype import Genotype, MacroArch, arch_provenance
        from rspnet.metrics import SegMetric
        from rspnet.models.derived import build_derived

        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.ignore_index = int(cfg.dataset.get("ignore_index", 255))
        self.aux_weight = aux_weight(cfg)
        # a plain tensor, not a buffer: checkpoints (and their strict loading) stay those of the network
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.net = build_derived(cfg, Genotype.from_dict(genotype, "checkpoint genotype"),
                                 MacroArch.from_dict(macro, "checkpoint macro"), self.num_classes)
        self.channels_last = bool(cfg.train.get("channels_last", False))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if cfg.train.get("compile", False):
            self.net.compile()  # in place: parameter names (and so checkpoints) stay those of the eager net
        self.meta: dict[str, Any] = {
            "format": CKPT_FORMAT,
            "genotype": genotype,
            "macro": macro,
            "num_classes": self.num_classes,
            "classes": list(classes) if classes is not None else [str(i) for i in range(self.num_classes)],
            "palette": [list(map(int, c)) for c in palette] if palette is not None else None,
            "config": {g: OmegaConf.to_container(cfg[g], resolve=True) for g in (*ARCH_GROUPS, "dataset", "train")},
            "params": sum(p.numel() for p in self.net.parameters()),
            "class_weights": list(class_weights) if class_weights is not None else None,
            "selection": selection,  # which split picked the checkpoint (train.select)
            # searched | random | preset per artifact (None = legacy file without the key)
            "arch_provenance": arch_provenance(genotype, macro),
        }
        self.val_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)
        self.test_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)
        self.test_result: dict[str, Any] | None = None
        self._test_images = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return _as_dict(self.net(x))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = seg_loss(self(x), y, self.cfg.train, self.ignore_index, self.aux_weight, self.class_weights)
        if not all_ranks_finite(loss):  # one decision for all DDP ranks, before the backward all-reduce
            value = loss.item() if not torch.isfinite(loss) else "non-finite on another DDP rank"
            raise NonFiniteError(f"training loss is {value} at epoch {self.current_epoch} step {self.global_step}; "
                                 "lower train.lr or use trainer.precision=32-true (last.ckpt holds the last good epoch)")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # validation during training uses whole-image inference (fast); eval picks the inference group
        x, y = batch
        out = self(x)
        loss = seg_loss(out, y, self.cfg.train, self.ignore_index, self.aux_weight, self.class_weights)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        logits = out["out"]
        if logits.shape[-2:] != y.shape[-2:]:
            logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
        # W&B prediction pictures: rspnet.utils.wandb_media.WandbMedia (added by build_trainer)
        self.val_metric.update(logits.argmax(1), y)

    def on_validation_epoch_end(self) -> None:
        res = self.val_metric.compute()
        self.val_metric.reset()
        # compute() already reduced the confusion matrix over ranks, so the values agree on every
        # rank; sync_dist (a mean of equal values) only tells Lightning so
        self.log("val/miou", torch.nan_to_num(res["miou"], nan=0.0), prog_bar=True, sync_dist=True)
        self.log("val/pixel_acc", torch.nan_to_num(res["pixel_acc"], nan=0.0), sync_dist=True)
        names = self.meta["classes"]
        # NaN = class absent from both ground truth and prediction (left out of the mean)
        self.log_dict({f"val/iou/{metric_name(n)}": v for n, v in zip(names, res["iou_per_class"])}, sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            log.info("%s", per_class_line(self.current_epoch, res, names, self.meta.get("selection")))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        from rspnet.inference import infer_from_cfg, upsample_argmax

        x, y = batch
        scores = infer_from_cfg(lambda t: self(t), x, self.cfg)
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
        t = self.cfg.train
        opt = torch.optim.SGD(self.net.parameters(), lr=float(t.lr), momentum=float(t.momentum),
                              weight_decay=float(t.weight_decay))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(total, float(t.get("poly_power", 0.9))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from rspnet.utils.checkpoint import RNG_KEY, rng_state

        checkpoint["rspnet"] = self.meta
        # beside the metadata: ckpt_path=last replays the same shuffles and augmentations
        checkpoint[RNG_KEY] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from rspnet.utils.checkpoint import RNG_KEY, check_state_dict, set_rng_state

        # runs before Lightning's strict load_state_dict: a checkpoint of another preset is one clear line
        check_state_dict(self, checkpoint["state_dict"], f"ckpt_path={self.trainer.ckpt_path}")
        if RNG_KEY in checkpoint:
            set_rng_state(checkpoint[RNG_KEY])


def metric_name(name: str) -> str:
    """A class name as a metric key part (no spaces or slashes)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def per_class_line(epoch: int, res: dict[str, torch.Tensor], names: list[str], selection: dict | None) -> str:
    """'val epoch 3 (holdout): mIoU 45.2 | sky 87.1 road 80.2 ...' (IoU in %, '-' = absent)."""
    split = (selection or {}).get("split") or "val"
    ious = " ".join(f"{metric_name(n)} {'-' if math.isnan(float(v)) else f'{100 * float(v):.1f}'}"
                    for n, v in zip(names, res["iou_per_class"]))
    return f"val epoch {epoch} ({split}): mIoU {100 * float(torch.nan_to_num(res['miou'])):.1f} | {ious}"


def load_net_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load: any missing, unexpected or shape-mismatched key is one ArtifactError listing them."""
    from rspnet.utils.checkpoint import check_state_dict

    check_state_dict(net, state, source)
    net.load_state_dict(state, strict=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load a Lightning checkpoint on CPU with one clear error for missing/corrupt files."""
    path = Path(str(path))
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors come in many types
        raise ArtifactError(f"{path}: cannot read checkpoint ({type(e).__name__}: {(str(e).splitlines() or ['empty or truncated file'])[0][:200]})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ArtifactError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def net_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The `net.*` weights of a checkpoint with the prefix stripped."""
    return {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def _arch_diff(user: DictConfig, stored: dict) -> list[str]:
    """`group.key` entries where the user's model/rsp/head differ from the checkpoint's."""
    diffs = []
    for g in ARCH_GROUPS:
        mine = OmegaConf.to_container(user[g], resolve=True) if g in user else {}
        for k in sorted(set(mine) | set(stored.get(g, {}))):
            if mine.get(k) != stored.get(g, {}).get(k):
                diffs.append(f"{g}.{k}={stored.get(g, {}).get(k)!r} (config: {mine.get(k)!r})")
    return diffs


def load_seg_checkpoint(path: str | Path, cfg: DictConfig | None = None) -> tuple[SegModule, dict[str, Any]]:
    """Rebuild the trained SegModule (eval mode) from a checkpoint; returns (module, checkpoint["rspnet"]).

    The network shape (model/rsp/head) always comes from the checkpoint; `cfg` supplies the
    rest (dataset, inference ...). Differences are logged, not errors.
    """
    from rspnet.utils.checkpoint import check_seg_meta

    ckpt = read_checkpoint(path)
    meta = check_seg_meta(ckpt.get("rspnet"), path, CKPT_FORMAT, (*ARCH_GROUPS, "dataset", "train"))
    stored = meta["config"]
    if cfg is None:
        cfg = OmegaConf.create(stored)
    else:
        diffs = _arch_diff(cfg, stored)
        if diffs:
            log.warning("%s: using the checkpoint's network config, which differs from the given one: %s", path, "; ".join(diffs))
        cfg = cfg.copy()
        with open_dict(cfg):
            for g in ARCH_GROUPS:
                cfg[g] = OmegaConf.create(stored[g])
    try:
        module = SegModule(cfg, meta["genotype"], meta["macro"], meta["num_classes"], meta.get("classes"), meta.get("palette"),
                           meta.get("class_weights"), meta.get("selection"))
    except ArtifactError as e:  # the stored genotype/macro: name the checkpoint it came from
        raise ArtifactError(f"{path}: {e}") from e
    except RSPNetError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to rebuild from the stored config is the checkpoint's
        first = (str(e).splitlines() or [""])[0][:200]
        raise ArtifactError(f"{path}: cannot rebuild the network from its rspnet metadata ({type(e).__name__}: {first})") from e
    load_net_weights(module.net, net_state(ckpt), str(path))
    module.eval()
    return module, meta


def finite_or_none(value: float) -> float | None:
    """JSON-safe number: NaN/inf (e.g. the IoU of a class absent from GT and prediction) -> None."""
    value = float(value)
    return value if math.isfinite(value) else None
