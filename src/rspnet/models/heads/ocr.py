"""OCR head (Yuan et al. 2019), as in HRNet-OCR / mmsegmentation.

Aux FCN head -> soft object regions; spatial gather -> one context vector per class;
object attention (pixel queries against region keys/values) -> augmented pixels -> classifier.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.models.layers import conv_bn_relu, fuse_scales, resize


def spatial_gather(feats: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Class centres: softmax(regions over pixels) @ feats -> [B, C, K, 1]."""
    b, c = feats.shape[:2]
    k = regions.shape[1]
    probs = regions.reshape(b, k, -1).softmax(dim=2)  # B, K, HW
    pixels = feats.reshape(b, c, -1).transpose(1, 2)  # B, HW, C
    return torch.bmm(probs, pixels).transpose(1, 2).unsqueeze(3)  # B, C, K, 1


class ObjectAttention(nn.Module):
    """Pixel-region attention: query = pixels, key/value = region contexts (key width `key_ch`)."""

    def __init__(self, channels: int, key_ch: int) -> None:
        super().__init__()
        self.key_ch = key_ch
        self.f_pixel = nn.Sequential(conv_bn_relu(channels, key_ch), conv_bn_relu(key_ch, key_ch))
        self.f_object = nn.Sequential(conv_bn_relu(channels, key_ch), conv_bn_relu(key_ch, key_ch))
        self.f_down = conv_bn_relu(channels, key_ch)
        self.f_up = conv_bn_relu(key_ch, channels)

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], proxy [B, C, K, 1] -> object context per pixel [B, C, H, W]."""
        b, _, h, w = x.shape
        query = self.f_pixel(x).reshape(b, self.key_ch, -1).transpose(1, 2)  # B, HW, key
        key = self.f_object(proxy).reshape(b, self.key_ch, -1)  # B, key, K
        value = self.f_down(proxy).reshape(b, self.key_ch, -1).transpose(1, 2)  # B, K, key
        sim = (torch.bmm(query, key) * self.key_ch**-0.5).softmax(dim=-1)  # B, HW, K
        context = torch.bmm(sim, value).transpose(1, 2).reshape(b, self.key_ch, h, w)
        return self.f_up(context)


class OCRHead(nn.Module):
    """feats (one per scale) -> {"out": OCR logits, "aux": soft-region logits}, both at input size."""

    # submodules with one output channel per class (re-initialised by train.init_skip=classifiers)
    class_layers = ("classifier", "aux_head.1")

    def __init__(self, in_channels: list[int], mid: int, key: int, num_classes: int, dropout: float = 0.05) -> None:
        super().__init__()
        total = sum(in_channels)
        # aux head = the HRNetV2 FCN head at full fused width (HRNet-OCR's `aux_head`)
        self.aux_head = nn.Sequential(conv_bn_relu(total, total), nn.Conv2d(total, num_classes, 1))
        self.bottleneck = conv_bn_relu(total, mid, kernel=3)
        self.attention = ObjectAttention(mid, key)
        self.fuse = nn.Sequential(conv_bn_relu(2 * mid, mid), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(mid, num_classes, 1)

    @classmethod
    def from_cfg(cls, cfg: DictConfig, in_channels: list[int], num_classes: int) -> OCRHead:
        """Sized by `cfg.model.ocr_mid_channels` and `cfg.model.ocr_key_channels`."""
        return cls(in_channels, int(cfg.model.ocr_mid_channels), int(cfg.model.ocr_key_channels), num_classes)

    def forward(self, feats: list[torch.Tensor], size: tuple) -> dict[str, torch.Tensor]:
        x = fuse_scales(feats)
        aux = self.aux_head(x)
        pixels = self.bottleneck(x)
        context = self.attention(pixels, spatial_gather(pixels, aux))
        out = self.classifier(self.fuse(torch.cat([context, pixels], dim=1)))
        return {"out": resize(out, size), "aux": resize(aux, size)}
