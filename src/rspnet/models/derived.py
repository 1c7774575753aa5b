"""The derived network: stem + trellis from `macro.json`, N stacked searched cells per node, a head.

Node (l, s) = sum of its chosen inputs, each path-aligned (1x1 conv-BN + bilinear resize) to
the node's width and size, followed by `model.cells_per_node` cells, each wrapped in RSP.
Layer 0 is the stem (scale 4). The head sees the last layer's outputs, one per scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.genotype import Genotype, MacroArch, MacroInput, MacroNode
from rspnet.models.heads import build_head
from rspnet.search_space.cell import RSP, FixedCell
from rspnet.search_space.trellis import STEM, Align, Node, Trellis, node_key


def _partner(layer: int, scale: int, scales: list[int]) -> int:
    """The other-scale input of node (layer, scale) in default_macro.

    Even layers read the next coarser scale (coarse -> fine, upsampled), odd layers the next
    finer one (fine -> coarse, downsampled), so across two layers every scale receives from
    both neighbours; at the ends of the scale range the only neighbour is used.
    """
    i = scales.index(scale)
    coarser, finer = scales[i + 1] if i + 1 < len(scales) else None, scales[i - 1] if i > 0 else None
    first, second = (coarser, finer) if layer % 2 == 0 else (finer, coarser)
    return first if first is not None else second  # type: ignore[return-value]


def default_macro(cfg: DictConfig) -> MacroArch:
    """HRNet-style exchange within top-2: node (l, s) <- (l-1, s) and (l-1, neighbour); layer 1 <- the stem.

    The neighbour alternates between the coarser (even l) and the finer (odd l) scale, see
    `_partner`. It is a preset, not a search result: the file says `"provenance": "preset"`.
    """
    scales = [int(s) for s in cfg.model.scales]
    layers = int(cfg.model.layers)
    nodes = []
    for layer in range(1, layers + 1):
        for s in scales:
            if layer == 1:
                srcs = [STEM]
            else:
                srcs = [(layer - 1, s)] + ([(layer - 1, _partner(layer, s, scales))] if len(scales) > 1 else [])
            nodes.append(MacroNode(layer, s, tuple(MacroInput(l, sc, 1.0) for l, sc in srcs)))
    d = MacroArch(
        layers=layers, scales=scales, top_k=2, nodes=nodes, search={"source": "default_macro"}, provenance="preset"
    ).to_dict()
    return MacroArch.from_dict(d, source="default_macro")  # validated like a file


def live_nodes(macro: MacroArch) -> list[Node]:
    """Nodes that feed the last layer (in layer order); the others would get no gradient."""
    live = {(macro.layers, s) for s in macro.scales}
    for layer in range(macro.layers, 0, -1):
        for s in macro.scales:
            if (layer, s) in live:
                live |= {(i.layer, i.scale) for i in macro.node(layer, s).inputs}
    return [(l, s) for l in range(1, macro.layers + 1) for s in macro.scales if (l, s) in live]


class TrellisNode(nn.Module):
    """Sum of aligned inputs -> N stacked (RSP-wrapped) fixed cells."""

    def __init__(self, in_widths: list[int], width: int, ops: list[str], cells: int, rsp: bool, shuffle: bool) -> None:
        super().__init__()
        self.aligns = nn.ModuleList(Align(c, width, affine=True) for c in in_widths)
        self.cells = nn.Sequential(
            *(RSP(width, lambda c: FixedCell(c, ops, affine=True), enabled=rsp, shuffle=shuffle) for _ in range(cells))
        )

    def forward(self, inputs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        x = sum(align(z, size) for align, z in zip(self.aligns, inputs))
        return self.cells(x)


class DerivedNet(Trellis):
    """Fixed-architecture RSPNet: `forward_features` (last layer, per scale) then `head`."""

    def __init__(
        self,
        genotype: Genotype,
        macro: MacroArch,
        base_width: int,
        cells_per_node: int,
        rsp: bool,
        shuffle: bool,
        make_head: Callable[[list[int]], nn.Module],
    ) -> None:
        super().__init__()
        self.macro, self.scales, self.layers = macro, list(macro.scales), int(macro.layers)
        width = self.build_stem(3, base_width, affine=True)
        self.inputs = {}
        self.trellis = nn.ModuleDict()
        for node in live_nodes(macro):
            srcs = [(i.layer, i.scale) for i in macro.node(*node).inputs]
            self.inputs[node] = srcs
            self.trellis[node_key(node)] = TrellisNode(
                [width[s] for _, s in srcs], width[node[1]], genotype.ops, cells_per_node, rsp, shuffle
            )
        self.out_channels = [width[s] for s in self.scales]
        self.head = make_head(self.out_channels)

    @classmethod
    def from_cfg(cls, cfg: DictConfig, genotype: Genotype, macro: MacroArch, num_classes: int) -> DerivedNet:
        """Build for `cfg.model`/`cfg.rsp`/`cfg.head` from the two artifacts (`head` from the HEADS registry)."""
        return cls(
            genotype,
            macro,
            base_width=int(cfg.model.base_width),
            cells_per_node=int(cfg.model.cells_per_node),
            rsp=bool(cfg.rsp.enabled),
            shuffle=bool(cfg.rsp.shuffle),
            make_head=lambda widths: build_head(cfg, widths, int(num_classes)),
        )

    def combine(self, node: Node, xs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        """Sum of the aligned inputs -> the node's N stacked fixed cells."""
        return self.trellis[node_key(node)](xs, size)
