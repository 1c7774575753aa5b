"""Training losses: cross-entropy, OHEM and the auxiliary-head term, as tensor functions with explicit arguments.

The HRNet-OCR criterion: OHEM (when on) applies to the final output only; the auxiliary
(soft-region) output gets plain cross-entropy. Both use the class weights when given (computed from
pixel counts in `rspnet.data.stats`; the SegModule's builder turns the config into these arguments).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rspnet.models.layers import at_label


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    thresh: float,
    min_kept: int,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """OHEM CE: mean over pixels whose true-class prob < `thresh`, keeping at least `min_kept` hardest.

    With `weight`, each kept pixel's loss is multiplied by its class weight (HRNet-OCR's
    OhemCrossEntropy); the hardness ranking uses the unweighted probability.
    """
    nll = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    if not valid.any():
        return nll.sum() * 0.0  # keeps the graph; no labelled pixel in this batch
    pixel_loss = nll if weight is None else nll * weight.to(nll)[target.flatten().clamp(max=len(weight) - 1)]
    with torch.no_grad():
        prob = (-nll[valid]).exp()  # softmax prob of the true class
        k = min(max(int(min_kept), 1), prob.numel())
        # raise the threshold so that at least k pixels are kept (mmsegmentation's OHEM sampler)
        threshold = max(float(thresh), float(prob.kthvalue(k).values))
        keep = prob <= threshold
    return pixel_loss[valid][keep].mean()


def _resized(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits at the target's resolution, in fp32 (the loss stays fp32 under AMP)."""
    return at_label(logits, target).float()


def seg_loss(
    out: dict[str, torch.Tensor],
    target: torch.Tensor,
    ignore_index: int,
    *,
    ohem: bool = False,
    thresh: float = 0.7,
    min_kept: int = 100000,
    aux_weight: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """(OHEM if `ohem`) CE on "out" + `aux_weight` * plain CE on "aux" when the head has one; `weight` per class."""
    w = None if weight is None else weight.to(out["out"].device, torch.float32)
    logits = _resized(out["out"], target)
    if ohem:
        loss = ohem_cross_entropy(logits, target, ignore_index, thresh, min_kept, w)
    else:
        loss = F.cross_entropy(logits, target, weight=w, ignore_index=ignore_index)
    if out.get("aux") is not None and aux_weight > 0:
        aux = F.cross_entropy(_resized(out["aux"], target), target, weight=w, ignore_index=ignore_index)
        loss = loss + aux_weight * aux
    return loss
