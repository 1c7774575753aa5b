"""HRNetV2-W48 (Wang et al. 2020) re-implemented as the peer reference for the derived network.

timm/torchvision cannot be imported on this machine (docs/design.md "Packaging pins"), so
this follows the official HRNet-Semantic-Segmentation code (seg_hrnet.py, W48 config):
stem (two stride-2 3x3 convs, 64 ch) -> layer1 (4 Bottlenecks, 256 ch) -> stages 2/3/4 with
1/4/3 HighResolutionModules of 4 BasicBlocks per branch at widths 48/96/192/384, each module
ending with the all-to-all fusion (1x1 conv-BN + upsample from coarser branches, chains of
stride-2 3x3 conv-BN from finer ones). The head is rspnet's own FCN head (`FCNHead`, the
HRNetV2 representation head), so that both networks are compared with the same head.
Published size with the HRNetV2 head on Cityscapes: 65.9M parameters (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rspnet.models.heads.fcn import FCNHead

WIDTHS = (48, 96, 192, 384)
# (modules, branches) of stages 2, 3, 4; every branch has 4 BasicBlocks (W48 config)
STAGES = ((1, 2), (4, 3), (3, 4))


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, relu: bool = False) -> nn.Sequential:
    """Conv (no bias, same padding) -> BN (-> ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut (expansion 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels, relu=True), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with a projected shortcut when widths differ."""

    def __init__(self, c_in: int, planes: int) -> None:
        super().__init__()
        c_out = 4 * planes
        self.body = nn.Sequential(
            conv_bn(c_in, planes, 1, relu=True), conv_bn(planes, planes, relu=True), conv_bn(planes, c_out, 1)
        )
        self.shortcut = conv_bn(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def fuse_path(c_in: int, c_out: int, hops: int) -> nn.Module:
    """Branch j -> branch i: 1x1 conv-BN (coarser, upsampled in forward) or `hops` stride-2 3x3 convs (finer)."""
    if hops <= 0:
        return conv_bn(c_in, c_out, 1)
    steps = [conv_bn(c_in, c_in, stride=2, relu=True) for _ in range(hops - 1)]
    return nn.Sequential(*steps, conv_bn(c_in, c_out, stride=2))


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output = ReLU(sum of all branches, aligned)."""

    def __init__(self, widths: tuple[int, ...], blocks: int = 4) -> None:
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(nn.Sequential(*(BasicBlock(c) for _ in range(blocks))) for c in widths)
        self.fuse = nn.ModuleList(
            nn.ModuleList(nn.Identity() if i == j else fuse_path(widths[j], widths[i], i - j) for j in range(n))
            for i in range(n)
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, paths in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, path in enumerate(paths):
                if j > i:
                    y = y + F.interpolate(path(xs[j]), size=size, mode="bilinear", align_corners=False)
                elif j < i:
                    y = y + path(xs[j])
            out.append(F.relu(y))
        return out


class HRNetV2(nn.Module):
    """HRNetV2-W48 backbone + FCN head; forward(x) -> {"out": logits at the input size}."""

    def __init__(
        self, num_classes: int = 19, widths: tuple[int, ...] = WIDTHS, head_channels: int | None = None
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, stride=2, relu=True), conv_bn(64, 64, stride=2, relu=True))
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *(Bottleneck(256, 64) for _ in range(3)))
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev: tuple[int, ...] = (256,)
        for modules, branches in STAGES:
            cur = tuple(widths[:branches])
            # existing branches change width with a 3x3 conv; a new branch comes from the coarsest one, stride 2
            self.transitions.append(
                nn.ModuleList(
                    (conv_bn(prev[i], cur[i], relu=True) if prev[i] != cur[i] else nn.Identity())
                    if i < len(prev)
                    else conv_bn(prev[-1], cur[i], stride=2, relu=True)
                    for i in range(branches)
                )
            )
            self.stages.append(nn.Sequential(*(HRModule(cur) for _ in range(modules))))
            prev = cur
        self.head = FCNHead(list(widths), head_channels or sum(widths), num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image -> four feature maps at strides 4/8/16/32."""
        xs = [self.layer1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = [t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)]
            xs = stage(xs)
        return xs

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.forward_features(x), tuple(x.shape[-2:]))


def hrnetv2_w48(num_classes: int = 19) -> HRNetV2:
    """HRNetV2-W48 with the 720-wide FCN head (the Cityscapes segmentation model)."""
    return HRNetV2(num_classes)
