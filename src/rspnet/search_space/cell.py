"""Norm-Cell (1 input, 2 intermediate nodes, 3 edges), MixedOp, and the RSP wrapper."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rspnet.models.layers import conv_bn
from rspnet.search_space.ops import PRIMITIVES, RELU_FIRST, make_op

# (src, dst) of the three edges: n1 = o01(x0); n2 = o02(x0) + o12(n1)
EDGES: list[tuple[int, int]] = [(0, 1), (0, 2), (1, 2)]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: interleave `groups` channel groups."""
    b, c, h, w = x.shape
    # B, g, C/g, H, W -> B, C/g, g, H, W
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """Softmax-weighted sum of all candidate ops on one edge."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, affine) for name in PRIMITIVES)
        self._relu_first = [name in RELU_FIRST for name in PRIMITIVES]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights`: [num_ops] softmax of this edge's alpha row."""
        # every RELU_FIRST op starts with the same ReLU: applying (and saving for backward) it once
        # instead of once per op is the same function for less time and memory
        # (docs/benchmarks.md "Optimisations")
        r = F.relu(x)
        out = None
        for w, op, relu_first in zip(weights.unbind(0), self.ops, self._relu_first):
            y = _rest(op, r) if relu_first else op(x)
            out = w * y if out is None else out + w * y
        return out


def _rest(op: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`op` without its first layer (the ReLU that MixedOp already applied)."""
    for layer in list(op)[1:]:
        x = layer(x)
    return x


class _CellBase(nn.Module):
    """Shared DAG of the Norm-Cell: edges[i] computes EDGES[i]; output = conv-BN(cat(n1, n2))."""

    edges: nn.ModuleList

    def __init__(self, channels: int, affine: bool) -> None:
        super().__init__()
        self.channels = channels
        self.project = conv_bn(2 * channels, channels, affine=affine)

    def _dag(self, x: torch.Tensor, edge_fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        n1 = edge_fn(0, x)
        n2 = edge_fn(1, x) + edge_fn(2, n1)
        return self.project(torch.cat([n1, n2], dim=1))


class SearchCell(_CellBase):
    """Supernet cell: every edge is a MixedOp; weights come from the shared alpha [3, 5]."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__(channels, affine)
        self.edges = nn.ModuleList(MixedOp(channels, affine) for _ in EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights`: [3, 5] = softmax(alpha, dim=-1)."""
        return self._dag(x, lambda i, h: self.edges[i](h, weights[i]))


class FixedCell(_CellBase):
    """Derived cell: one op per edge, as chosen by the genotype."""

    def __init__(self, channels: int, ops: Sequence[str], affine: bool = True) -> None:
        super().__init__(channels, affine)
        if len(ops) != len(EDGES):
            raise ValueError(f"a Norm-Cell has {len(EDGES)} edges, got {len(ops)} ops")
        self.edges = nn.ModuleList(make_op(name, channels, affine) for name in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._dag(x, lambda i, h: self.edges[i](h))


class RSP(nn.Module):
    """Recursive Stage Partial wrapper.

    On: the first half of the channels goes through a cell built at width C/2, the second
    half bypasses it; output = channel_shuffle(cat(cell(x_a), x_b), 2), so the next stacked
    cell processes the other half. Off: the cell is built at width C and applied to all of x.
    """

    def __init__(
        self, channels: int, make_cell: Callable[[int], nn.Module], enabled: bool = True, shuffle: bool = True
    ) -> None:
        super().__init__()
        if enabled and channels % 2:
            raise ValueError(f"RSP needs an even channel count, got {channels}")
        self.enabled, self.shuffle = enabled, shuffle
        self.split = channels // 2 if enabled else channels
        self.cell = make_cell(self.split)

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.cell(x, *args)
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        y = self.cell(x_a, *args)
        if not self.shuffle:
            return torch.cat([y, x_b], dim=1)
        # == channel_shuffle(cat([y, x_b]), 2) with one copy instead of two: channels y0, b0, y1, b1, ...
        return torch.stack([y, x_b], dim=2).flatten(1, 2)  # B, C/2, 2, H, W -> B, C, H, W
