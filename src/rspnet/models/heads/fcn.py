"""HRNetV2-style FCN head: fuse all scales at 1/4, 1x1 conv-BN-ReLU, 1x1 classifier, upsample."""

from __future__ import annotations

import torch
from torch import nn

from rspnet.models.heads import conv_bn_relu, fuse_scales, upsample


class FCNHead(nn.Module):
    """feats (one per scale) -> {"out": logits at the input size}."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(sum(in_channels), channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple) -> dict[str, torch.Tensor]:
        return {"out": upsample(self.classifier(self.fuse(fuse_scales(feats))), size)}
