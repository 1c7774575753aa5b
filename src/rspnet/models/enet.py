"""ENet (Paszke et al. 2016, arXiv:1606.02147), written from the paper's Table 1 and Figure 2.

Encoder: initial block (3x3 stride-2 conv, 13 channels, beside a 2x2 max-pool of the 3 input channels:
16 channels at 1/2), stage 1 (downsampling bottleneck to 64 at 1/4, 4 regular), stages 2 and 3 (128 at
1/8: regular, dilated 2, asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5, dilated 16; stage 2
opens with a downsampling bottleneck, stage 3 does not). Decoder: stage 4 (upsampling bottleneck to 64,
2 regular), stage 5 (upsampling to 16, 1 regular), then a 2x2 stride-2 transposed conv to the classes.

A bottleneck (Fig. 2b) is projection -> conv -> expansion with BN and PReLU, spatial dropout at the end of
the branch (p = 0.01 in stage 1, 0.1 afterwards), added to the main branch, then PReLU. The projection of
a downsampling bottleneck is a 2x2 stride-2 conv and its main branch max-pools and zero-pads channels; an
upsampling bottleneck's main branch is a 1x1 conv and max-unpooling with the matching encoder indices.
Projections have no bias (paper §4); internal width is a quarter of the output width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 8  # the encoder halves the input three times; other sizes are padded up to a multiple


def _bn_prelu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels, eps=1e-3), nn.PReLU(channels)]


def unpool(x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Max-unpooling as a scatter into zeros (`F.max_unpool2d`'s result; this form also exports to ONNX)."""
    b, c = x.shape[:2]
    out = x.new_zeros(b, c, size[0] * size[1])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(b, c, size[0], size[1])


class InitialBlock(nn.Module):
    """3x3 stride-2 conv (13 ch) concatenated with a 2x2 max-pool of the input (3 ch) -> BN -> PReLU."""

    def __init__(self, out_channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels - 3, 3, stride=2, padding=1)
        self.act = nn.Sequential(*_bn_prelu(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.cat([self.conv(x), F.max_pool2d(x, 2)], dim=1))


class Bottleneck(nn.Module):
    """Regular / dilated / asymmetric (1x5 then 5x1) bottleneck, or a downsampling one (`downsample=True`)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        dropout: float,
        dilation: int = 1,
        asymmetric: int = 0,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        mid, stride = c_out // 4, 2 if downsample else 1
        if asymmetric:
            pad = asymmetric // 2
            conv: list[nn.Module] = [
                nn.Conv2d(mid, mid, (1, asymmetric), padding=(0, pad), bias=False),
                nn.Conv2d(mid, mid, (asymmetric, 1), padding=(pad, 0)),
            ]
        else:
            conv = [nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation)]
        self.branch = nn.Sequential(
            nn.Conv2d(c_in, mid, stride, stride=stride, bias=False),  # 1x1, or 2x2 stride 2 when downsampling
            *_bn_prelu(mid),
            *conv,
            *_bn_prelu(mid),
            nn.Conv2d(mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3),
            nn.Dropout2d(dropout),
        )
        self.downsample, self.pad_channels = downsample, c_out - c_in
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, the max-pool indices of a downsampling bottleneck, else None)."""
        main, indices = x, None
        if self.downsample:
            main, indices = F.max_pool2d(x, 2, return_indices=True)
        if self.pad_channels:
            main = F.pad(main, (0, 0, 0, 0, 0, self.pad_channels))  # zero channels up to c_out
        return self.act(main + self.branch(x)), indices


class Upsample(nn.Module):
    """Upsampling bottleneck: 1x1 conv + max-unpool (main) + projection / 3x3 transposed conv / expansion."""

    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        mid = c_out // 4
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, eps=1e-3))
        self.branch = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False),
            *_bn_prelu(mid),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1),
            *_bn_prelu(mid),
            nn.Conv2d(mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        main = unpool(self.main(x), indices, (2 * x.shape[-2], 2 * x.shape[-1]))
        return self.act(main + self.branch(x))


def _stage_2_or_3(dropout: float) -> list[Bottleneck]:
    """Bottlenecks x.1 .. x.8 of stages 2 and 3 (Table 1): 128 channels, dilations 2/4/8/16, asymmetric 5."""
    kinds = [{}, {"dilation": 2}, {"asymmetric": 5}, {"dilation": 4}, {}, {"dilation": 8}, {"asymmetric": 5}]
    return [Bottleneck(128, 128, dropout, **kind) for kind in [*kinds, {"dilation": 16}]]


class ENet(nn.Module):
    """ENet for `num_classes`; any input size (padded up to a multiple of 8, logits cropped back)."""

    class_layers = ("fullconv",)  # the class-shaped layer (train.init_skip=classifiers re-initialises it)

    def __init__(self, num_classes: int, dropout: tuple[float, float] = (0.01, 0.1)) -> None:
        super().__init__()
        p1, p = dropout
        self.initial = InitialBlock(16)
        self.down1 = Bottleneck(16, 64, p1, downsample=True)
        self.stage1 = nn.ModuleList(Bottleneck(64, 64, p1) for _ in range(4))
        self.down2 = Bottleneck(64, 128, p, downsample=True)
        self.stage23 = nn.ModuleList([*_stage_2_or_3(p), *_stage_2_or_3(p)])
        self.up4 = Upsample(128, 64, p)
        self.stage4 = nn.ModuleList(Bottleneck(64, 64, p) for _ in range(2))
        self.up5 = Upsample(64, 16, p)
        self.stage5 = nn.ModuleList([Bottleneck(16, 16, p)])
        self.fullconv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE))  # zeros right and below, cropped off the logits
        x, idx1 = self.down1(self.initial(x))  # B, 64, H/4, W/4
        for block in self.stage1:
            x = block(x)[0]
        x, idx2 = self.down2(x)  # B, 128, H/8, W/8
        for block in self.stage23:
            x = block(x)[0]
        x = self.up4(x, idx2)  # B, 64, H/4, W/4
        for block in self.stage4:
            x = block(x)[0]
        x = self.up5(x, idx1)  # B, 16, H/2, W/2
        for block in self.stage5:
            x = block(x)[0]
        return self.fullconv(x)[..., :h, :w]
