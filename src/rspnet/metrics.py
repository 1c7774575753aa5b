"""Confusion-matrix segmentation metric (mIoU as the official Cityscapes evaluator computes it)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SegMetric(Metric):
    """Accumulates a [K, K] confusion matrix (rows = ground truth); DDP-reduced by sum.

    `compute()` -> {"miou", "iou_per_class" (nan for classes absent from both ground truth
    and prediction, which the mean skips, as cityscapesscripts does), "pixel_acc", "macc",
    "acc_per_class" (recall of each class; nan for classes absent from the ground truth, skipped
    by the mean, as mmsegmentation's IoUMetric does), "confmat"}.
    Pixels whose ground truth is `ignore_index` are not counted at all.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: `preds` [B,H,W] class ids (or [B,K,H,W] scores), `target` [B,H,W]."""
        if preds.is_floating_point() and preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
        k = self.num_classes
        valid = target != self.ignore_index
        t, p = target[valid].long(), preds[valid].long()
        if t.numel() and (t.min() < 0 or t.max() >= k):
            raise ValueError(f"target holds ids outside 0..{k - 1} (and not ignore_index={self.ignore_index})")
        if p.numel() and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"preds hold ids outside 0..{k - 1}")
        self.confmat += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, torch.Tensor]:
        """mIoU over classes present in GT or prediction, per-class IoU, pixel accuracy, mAcc, the confusion matrix."""
        cm = self.confmat.double()
        tp = cm.diag()
        iou, miou = confmat_iou(self.confmat)
        total = cm.sum()
        acc = tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=cm.dtype)
        gt = cm.sum(1)
        class_acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
        in_gt = ~class_acc.isnan()
        macc = class_acc[in_gt].mean() if in_gt.any() else torch.tensor(float("nan"), dtype=cm.dtype)
        return {
            "miou": miou.float(),
            "iou_per_class": iou.float(),
            "pixel_acc": acc.float(),
            "macc": macc.float(),
            "acc_per_class": class_acc.float(),
            "confmat": self.confmat.clone(),
        }


def confmat_iou(confmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU per class, mIoU) of a [K, K] confusion matrix; classes absent from GT and prediction are nan, skipped."""
    cm = confmat.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = ~iou.isnan()
    miou = iou[present].mean() if present.any() else torch.tensor(float("nan"), dtype=cm.dtype)
    return iou, miou
