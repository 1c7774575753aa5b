"""Layer factories shared by the cells, the trellis and the heads: conv-BN(-ReLU), resize, scale fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 1, affine: bool = True) -> nn.Sequential:
    """Conv(k, same padding, no bias) -> BN (cell output projection, path alignment)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out, affine=affine)
    )


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, affine: bool = True) -> nn.Sequential:
    """Conv(k, same padding, no bias) -> BN -> ReLU (the head building block)."""
    return nn.Sequential(*conv_bn(c_in, c_out, kernel, affine), nn.ReLU(inplace=True))


def resize(x: torch.Tensor, size: Sequence[int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to `size` (H, W), align_corners=False: the one interpolation the project uses."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def at_label(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logits at the label's size (`dataset.eval_scale` / `resize_long` scale only the image), as validation scores them."""
    return logits if logits.shape[-2:] == y.shape[-2:] else resize(logits, y.shape[-2:])


def fuse_scales(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """HRNetV2 representation: upsample every scale to the first (finest) one and concatenate."""
    size = feats[0].shape[-2:]
    return torch.cat([feats[0]] + [resize(f, size) for f in feats[1:]], dim=1)
