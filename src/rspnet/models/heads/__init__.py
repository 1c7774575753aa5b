"""Segmentation heads over the trellis' last-layer outputs (`head=fcn|ocr`), looked up in `HEADS`.

A head is `Head(in_channels, ...)` with `from_cfg(cfg, in_channels, num_classes)` and
`forward(feats, size) -> {"out": logits at size, ...}`; it names its class-shaped submodules (one
output channel per class) in `class_layers`, which `train.init_skip=classifiers` re-initialises.
A new head is one module here plus one `HEADS` entry (timm's `_model_entrypoints`, mmseg's
`HEADS` registry).
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ConfigError
from rspnet.models.heads.fcn import FCNHead
from rspnet.models.heads.ocr import OCRHead

HEADS: dict[str, type[FCNHead] | type[OCRHead]] = {"fcn": FCNHead, "ocr": OCRHead}


def build_head(cfg: DictConfig, in_channels: list[int], num_classes: int) -> nn.Module:
    """Head named by `cfg.head.name`, sized by `cfg.model` (head_channels, ocr_*_channels)."""
    name = str(cfg.head.name)
    if name not in HEADS:
        raise ConfigError(f"head={name} is unknown; choose one of: {', '.join(HEADS)}")
    return HEADS[name].from_cfg(cfg, in_channels, num_classes)
