"""Albumentations pipelines: train (scale, pad+crop, flip, colour jitter) and eval (normalise).

The eval pipeline transforms the image only: labels are scored at their own resolution (the
network's scores are upsampled to the label, docs/design.md "Evaluation protocol").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2

from rspnet.errors import ConfigError

# ImageNet statistics (the usual choice for segmentation nets trained from scratch or not)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IGNORE = 255


def _pair(value: Any, key: str) -> tuple[float, float]:
    """A 2-sequence option as a tuple, or a one-line ConfigError."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"dataset.{key}={value} must be a pair like [H, W] / [low, high]")
    return float(value[0]), float(value[1])


def _resize(resize_long: int | None) -> list[A.BasicTransform]:
    """Optional longest-side resize (huge Mapillary images); nearest for masks."""
    if not resize_long:
        return []
    return [
        A.LongestMaxSize(
            max_size=int(resize_long), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST
        )
    ]


def train_transform(dcfg: Any) -> A.Compose:
    """Random scale `scale_range`, pad (mask 255) + random crop `crop_size`, h-flip, colour jitter."""
    lo, hi = _pair(dcfg.get("scale_range", (0.5, 2.0)), "scale_range")
    if not 0 < lo <= hi:
        raise ConfigError(f"dataset.scale_range=[{lo}, {hi}] must satisfy 0 < low <= high")
    ch, cw = (int(v) for v in _pair(dcfg.get("crop_size"), "crop_size"))
    ops: list[A.BasicTransform] = _resize(dcfg.get("resize_long"))
    ops += [
        # albumentations scales by 1 + U(limit): [lo, hi] -> limit (lo - 1, hi - 1)
        A.RandomScale(
            scale_limit=(lo - 1.0, hi - 1.0),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        ),
        A.PadIfNeeded(
            min_height=ch, min_width=cw, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE, position="center"
        ),
        A.RandomCrop(height=ch, width=cw),
    ]
    if dcfg.get("hflip", True):
        ops.append(A.HorizontalFlip(p=0.5))
    jitter = dcfg.get("color_jitter")
    if jitter:
        if len(jitter) != 4:
            raise ConfigError(
                f"dataset.color_jitter={list(jitter)} must be [brightness, contrast, saturation, hue] or null"
            )
        b, c, s, h = (float(v) for v in jitter)
        ops.append(A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=0.8))
    ops.append(A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0))
    return A.Compose(ops)


def _scale(factor: float | None) -> list[A.BasicTransform]:
    """Optional fixed rescale of the image by `factor` (dataset.eval_scale): the inference scale."""
    if factor is None or float(factor) == 1.0:
        return []
    if float(factor) <= 0:
        raise ConfigError(f"dataset.eval_scale={factor} must be > 0 (1 or null = the frame's own size)")
    # a one-point range: RandomScale with it always scales by exactly `factor`
    limit = float(factor) - 1.0
    return [A.RandomScale(scale_limit=(limit, limit), interpolation=cv2.INTER_LINEAR, p=1.0)]


def eval_transform(resize_long: int | None = None, scale: float | None = None) -> A.Compose:
    """Normalise, after the optional longest-side resize and the optional `scale` (image only: see module doc)."""
    return A.Compose([*_resize(resize_long), *_scale(scale), A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0)])


def build_transform(dcfg: Any, train: bool) -> A.Compose:
    """The train or eval pipeline for a dataset config."""
    return train_transform(dcfg) if train else eval_transform(dcfg.get("resize_long"), dcfg.get("eval_scale"))
