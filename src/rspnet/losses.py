"""Training losses: cross-entropy, OHEM, the auxiliary-head term, and class-balancing weights.

The HRNet-OCR criterion: OHEM (when on) applies to the final output only; the auxiliary
(soft-region) output gets plain cross-entropy. Both use the class weights when given.
Class weights come from the pixel statistics of `stage=data_stats` (SegNet's
median-frequency balancing or ENet's `1 / ln(c + p_class)`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from rspnet.errors import ArtifactError, ConfigError
from rspnet.models.layers import resize

log = logging.getLogger(__name__)
WEIGHTINGS = ("median_freq", "enet")
ENET_C = 1.02  # ENet (Paszke et al. 2016): bounds the weights to [1, 1/ln(1.02) = 50.5]


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


def aux_weight(cfg: DictConfig) -> float:
    """`train.aux_weight` when set, else the head's own default (`head.aux_weight`: ocr 0.4)."""
    w = cfg.train.get("aux_weight")
    return float(w if w is not None else cfg.head.get("aux_weight", 0.0) or 0.0)


def _resized(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits at the target's resolution, in fp32 (the loss stays fp32 under AMP)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = resize(logits, target.shape[-2:])
    return logits.float()


def seg_loss(
    out: dict[str, torch.Tensor],
    target: torch.Tensor,
    t: DictConfig,
    ignore_index: int,
    aux: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """(OHEM if `train.ohem`) CE on "out" + `aux` * plain CE on "aux" when the head has one; `weight` per class."""
    w = None if weight is None else weight.to(out["out"].device, torch.float32)
    logits = _resized(out["out"], target)
    if t.get("ohem", False):
        loss = ohem_cross_entropy(logits, target, ignore_index, t.ohem_thresh, t.ohem_min_kept, w)
    else:
        loss = F.cross_entropy(logits, target, weight=w, ignore_index=ignore_index)
    if out.get("aux") is not None and aux > 0:
        loss = loss + aux * F.cross_entropy(_resized(out["aux"], target), target, weight=w, ignore_index=ignore_index)
    return loss


# --- class-balancing weights -------------------------------------------------------------
def median_frequency_weights(pixels: list[int], image_pixels: list[int]) -> list[float]:
    """SegNet: w_c = median(freq) / freq_c, freq_c = pixels of c / labelled pixels of the images holding c.

    Classes with no pixel get weight 0 (they never occur as a target, so it does not matter).
    """
    freq = [p / n if p > 0 and n > 0 else 0.0 for p, n in zip(pixels, image_pixels)]
    present = sorted(f for f in freq if f > 0)
    if not present:
        raise ConfigError("class weights: the training split has no labelled pixel")
    mid = len(present) // 2
    median = present[mid] if len(present) % 2 else 0.5 * (present[mid - 1] + present[mid])
    return [median / f if f > 0 else 0.0 for f in freq]


def enet_weights(pixels: list[int], c: float = ENET_C) -> list[float]:
    """ENet: w_c = 1 / ln(c + p_c), p_c = pixels of class c / all labelled pixels."""
    total = sum(pixels)
    if total <= 0:
        raise ConfigError("class weights: the training split has no labelled pixel")
    return [1.0 / math.log(c + p / total) for p in pixels]


def weights_from_stats(stats: dict[str, Any], scheme: str) -> list[float]:
    """Weights of `scheme` from one split's statistics (pixels_per_class, pixels_of_images_with_class)."""
    if scheme == "median_freq":
        return median_frequency_weights(stats["pixels_per_class"], stats["pixels_of_images_with_class"])
    if scheme == "enet":
        return enet_weights(stats["pixels_per_class"])
    raise ConfigError(f"train.class_weighting={scheme} is unknown; use one of: {', '.join(WEIGHTINGS)}")


def read_stats_file(path: Path, num_classes: int) -> dict[str, Any]:
    """The `train` split statistics of a data_stats.json, with one clear error naming the file."""
    from rspnet.utils.io import read_json

    where = f"train.class_weights={path}"
    if not path.is_file():
        raise ConfigError(f"{where}: file not found; pass a data_stats.json written by stage=data_stats, or auto/none")
    try:
        data = read_json(path, "data_stats")
    except ArtifactError as e:
        raise ConfigError(f"{where}: {e}") from e
    try:
        stats = data["splits"]["train"]
        ok = all(len(stats[k]) == num_classes for k in ("pixels_per_class", "pixels_of_images_with_class"))
    except (KeyError, TypeError) as e:
        raise ConfigError(
            f"{where}: not a data_stats.json with train-split counts (missing {e}); "
            "re-run stage=data_stats with this version"
        ) from e
    if not ok:
        raise ConfigError(f"{where}: has counts for another number of classes than this dataset's {num_classes}")
    return stats


def resolve_class_weights(cfg: DictConfig, datamodule: Any, out: Path) -> list[float] | None:
    """`train.class_weights` (none | auto | PATH) with `train.class_weighting` -> weights, or None.

    auto counts the training images actually trained on (the held-out slice excluded) with the
    data_stats code and caches the counts in DIR/class_stats.json (reused on resume).
    """
    source = cfg.train.get("class_weights")
    if source in (None, "none", "None", False):
        return None
    scheme = str(cfg.train.get("class_weighting", "median_freq"))
    if scheme not in WEIGHTINGS:
        raise ConfigError(f"train.class_weighting={scheme} is unknown; use one of: {', '.join(WEIGHTINGS)}")
    if str(source) == "auto":
        from rspnet.stages.data_stats import cached_training_stats

        stats = cached_training_stats(cfg, datamodule, out / "class_stats.json")
    else:
        stats = read_stats_file(Path(str(source)), datamodule.num_classes)
    weights = weights_from_stats(stats, scheme)
    log.info(
        "class weights (%s, from %s): %s",
        scheme,
        source,
        ", ".join(f"{n} {w:.2f}" for n, w in zip(datamodule.classes, weights)),
    )
    return weights
