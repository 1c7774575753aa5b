"""The trellis shared by both supernets and the derived network: nodes, widths, sizes, stem, forward loop.

A node is (layer, scale); layer 0 is the stem (scale 4). `Trellis.forward_features` is the one
loop over the nodes (DARTS' `Network.forward`, timm's `forward_features`); each network says
only how a node combines its inputs (`combine`) and which inputs it has (`inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rspnet.models.layers import conv_bn, resize

STEM_SCALE = 4
Node = tuple[int, int]  # (layer, scale); layer 0 = the stem
STEM: Node = (0, STEM_SCALE)


def node_key(node: Node) -> str:
    """ModuleDict key of a node (state_dict-stable: `l{layer}_s{scale}`)."""
    return f"l{node[0]}_s{node[1]}"


def scale_width(base_width: int, scale: int) -> int:
    """Channels of a node at output stride `scale`: B * s / 4 (B = 48 -> 48/96/192/384)."""
    return base_width * scale // STEM_SCALE


def _ceil_div(n: torch.Tensor | int, d: int) -> torch.Tensor | int:
    # integer arithmetic (not math.ceil) keeps H, W symbolic when traced; n >= 0, so ONNX's
    # truncating division equals floor division here (-(-n // d) would not survive export)
    return (n + d - 1) // d


def node_sizes(stem_hw: Sequence[torch.Tensor | int], scales: Sequence[int]) -> dict[int, tuple]:
    """Spatial size (H, W) of the nodes at each scale, given the stem output (stride 4) size; trace-safe."""
    h, w = stem_hw
    return {s: (_ceil_div(h, s // STEM_SCALE), _ceil_div(w, s // STEM_SCALE)) for s in scales}


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
        self.proj = conv_bn(c_in, c_out, affine=affine) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple) -> torch.Tensor:
        x = self.proj(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = resize(x, size)
        return x


class Trellis(nn.Module):
    """Stem -> nodes in `inputs` order -> last-layer outputs; subclasses define `combine` and a `head`.

    Subclasses set `scales` and `layers`, call `build_stem` and fill `inputs` (node -> its input
    nodes, in forward order) in their own `__init__`, in the order that keeps their parameter
    creation (and so the seeded init and the state_dict) what it always was.
    """

    scales: list[int]
    layers: int
    stem: nn.Module
    head: nn.Module
    inputs: dict[Node, list[Node]]

    def build_stem(self, in_channels: int, base_width: int, affine: bool) -> dict[int, int]:
        """Check `self.scales`, create `self.stem`; -> channels per scale (B * s / 4)."""
        if self.scales[0] != STEM_SCALE:
            raise ValueError(f"model.scales must start at the stem scale {STEM_SCALE}, got {self.scales}")
        width = {s: scale_width(base_width, s) for s in self.scales}
        self.stem = Stem(in_channels, width[STEM_SCALE], affine=affine)
        return width

    def combine(self, node: Node, xs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        """Output of `node` from its inputs' outputs `xs` (in `inputs[node]` order), at spatial `size`."""
        raise NotImplementedError

    def forward_nodes(self, feats: dict[Node, torch.Tensor]) -> dict[Node, torch.Tensor]:
        """Complete `feats` (the stem's output and any nodes already known) with every other node, in order."""
        sizes = node_sizes(feats[STEM].shape[-2:], self.scales)
        for node, srcs in self.inputs.items():
            if node not in feats:
                feats[node] = self.combine(node, [feats[src] for src in srcs], sizes[node[1]])
        return feats

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image -> last-layer node outputs, one per scale (scale 4 first)."""
        feats = self.forward_nodes({STEM: self.stem(x)})
        return [feats[(self.layers, s)] for s in self.scales]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Image [B, 3, H, W] -> {"out": logits [B, K, H, W] at input size (+ "aux" for OCR)}."""
        return self.head(self.forward_features(x), tuple(x.shape[-2:]))
