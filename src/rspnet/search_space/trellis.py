"""Trellis pieces shared by both supernets and the derived network: stem, widths, alignment."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rspnet.search_space.cell import conv_bn

STEM_SCALE = 4


def scale_width(base_width: int, scale: int) -> int:
    """Channels of a node at output stride `scale`: B * s / 4 (B = 48 -> 48/96/192/384)."""
    return base_width * scale // STEM_SCALE


def scale_size(stem_hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """Spatial size of a node at stride `scale`, given the stem output (stride 4) size."""
    f = scale // STEM_SCALE
    return math.ceil(stem_hw[0] / f), math.ceil(stem_hw[1] / f)


class Stem(nn.Module):
    """Two stride-2 3x3 conv-BN-ReLU: image -> 1/4 resolution, `out_channels` wide."""

    def __init__(self, in_channels: int, out_channels: int, affine: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Align(nn.Module):
    """Path alignment: 1x1 conv-BN to the target width (skipped if equal), then bilinear resize."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.proj = conv_bn(c_in, c_out, affine) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
