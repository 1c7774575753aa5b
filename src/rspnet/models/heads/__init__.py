"""Segmentation heads over the trellis' last-layer outputs (`head=fcn|ocr`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ConfigError

HEADS = ("fcn", "ocr")


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1) -> nn.Sequential:
    """Conv(k, same padding) -> BN -> ReLU, the head building block."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def fuse_scales(feats: list[torch.Tensor]) -> torch.Tensor:
    """HRNetV2 representation: upsample every scale to the first (1/4) one and concatenate."""
    size = feats[0].shape[-2:]
    ups = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
    return torch.cat(ups, dim=1)


def upsample(x: torch.Tensor, size: tuple) -> torch.Tensor:
    """Bilinear resize of logits to the input size."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_head(cfg: DictConfig, in_channels: list[int], num_classes: int) -> nn.Module:
    """Head named by `cfg.head.name`, sized by `cfg.model` (head_channels, ocr_*_channels)."""
    from rspnet.models.heads.fcn import FCNHead
    from rspnet.models.heads.ocr import OCRHead

    name = str(cfg.head.name)
    if name == "fcn":
        return FCNHead(in_channels, int(cfg.model.head_channels), num_classes)
    if name == "ocr":
        return OCRHead(in_channels, int(cfg.model.ocr_mid_channels), int(cfg.model.ocr_key_channels), num_classes)
    raise ConfigError(f"head={name} is unknown; choose one of: {', '.join(HEADS)}")
