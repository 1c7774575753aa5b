"""Mask colouring: class-id maps -> RGB pictures and image overlays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_COLOR = (0, 0, 0)


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]], ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
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
