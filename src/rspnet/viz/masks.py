"""Mask colouring: class-id maps -> RGB pictures and image overlays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

IGNORE_COLOR = (0, 0, 0)


def colorize(
    mask: np.ndarray, palette: Sequence[Sequence[int]], ignore_color: Sequence[int] = IGNORE_COLOR
) -> np.ndarray:
    """Map an [H, W] integer mask to an [H, W, 3] uint8 picture; ids outside the palette get `ignore_color`."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    # one lookup table of 256 entries: every id not in the palette (255 = ignore) is painted ignore_color
    lut = np.tile(np.asarray(ignore_color, dtype=np.uint8), (256, 1))
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return lut[np.clip(mask, 0, 255).astype(np.int64)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised mask over an [H, W, 3] uint8 image (`alpha` = mask opacity)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    if image.shape[:2] != np.shape(mask):
        raise ValueError(f"image {image.shape[:2]} and mask {np.shape(mask)} sizes differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = colorize(mask, palette).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def denormalise(x: torch.Tensor) -> np.ndarray:
    """Normalised float [3, H, W] (datasets' MEAN/STD) -> uint8 [H, W, 3] for pictures."""
    from rspnet.data.transforms import MEAN, STD

    x = x.detach().float().cpu() * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()


def prediction_panel(
    x: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, palette: Sequence[Sequence[int]], alpha: float = 0.6
) -> np.ndarray:
    """[H, 2W, 3] picture: prediction overlay | ground-truth overlay (ignore pixels left unpainted black)."""
    image = denormalise(x)
    left = overlay(image, pred.cpu().numpy(), palette, alpha)
    right = overlay(image, target.cpu().numpy(), palette, alpha)
    return np.concatenate([left, right], axis=1)
