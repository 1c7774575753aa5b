"""HRNetV2-style FCN head: fuse all scales at 1/4, 1x1 conv-BN-ReLU, 1x1 classifier, upsample."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.models.layers import conv_bn_relu, fuse_scales, resize


class FCNHead(nn.Module):
    """feats (one per scale) -> {"out": logits at the input size}; the search nets use it with affine=False."""

    # submodules with one output channel per class (re-initialised by train.init_skip=classifiers)
    class_layers = ("classifier",)

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, affine: bool = True) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(sum(in_channels), channels, affine=affine)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    @classmethod
    def from_cfg(cls, cfg: DictConfig, in_channels: list[int], num_classes: int) -> FCNHead:
        """Sized by `cfg.model.head_channels`."""
        return cls(in_channels, int(cfg.model.head_channels), num_classes)

    def forward(self, feats: list[torch.Tensor], size: tuple) -> dict[str, torch.Tensor]:
        return {"out": resize(self.classifier(self.fuse(fuse_scales(feats))), size)}
