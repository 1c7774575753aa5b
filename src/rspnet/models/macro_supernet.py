"""Stage-2 supernet: the searched cell is fixed; PAM weighs every earlier node as an input.

Node (l, s), l = 1..L, takes as candidates the stem (layer 0, scale 4) and every node of
layers max(1, l - lookback)..l-1 (lookback None = all). Each candidate is aligned to the
node's C x H x W (1x1 conv-BN + bilinear resize, SPEC §2.4). An earlier node's alignment
to a target scale is computed once per forward and shared by all nodes of that scale, so
alignments cost O(L * S^2) instead of O(L^2 * S^2) (`reuse_alignment=False` disables the
cache; the benchmark uses it to measure the saving).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.genotype import STEM, Genotype
from rspnet.models.supernet import SearchHead
from rspnet.search_space.attention import PathAttention
from rspnet.search_space.cell import RSP, FixedCell
from rspnet.search_space.trellis import STEM_SCALE, Align, Stem, scale_size, scale_width

NodeId = tuple[int, int]  # (layer, scale); layer 0 = the stem


def _key(node: NodeId) -> str:
    return f"l{node[0]}_s{node[1]}"


def candidate_inputs(layer: int, scales: Sequence[int], lookback: int | None) -> list[NodeId]:
    """Candidate input nodes of any node at `layer`: the stem, then earlier layers' nodes."""
    first = 1 if lookback is None else max(1, layer - int(lookback))
    return [STEM] + [(l, s) for l in range(first, layer) for s in scales]


class MacroSupernet(nn.Module):
    """Stem + L x S nodes, each = PAM over aligned candidates -> one fixed searched cell (RSP)."""

    def __init__(
        self,
        genotype: Genotype,
        num_classes: int,
        base_width: int,
        scales: Sequence[int],
        layers: int,
        lookback: int | None = None,
        mlp_hidden: int = 16,
        rsp: bool = True,
        shuffle: bool = True,
        head_channels: int = 32,
        reuse_alignment: bool = True,
        scoring: str = "pam",
    ) -> None:
        super().__init__()
        if lookback is not None and int(lookback) < 1:
            raise ValueError(f"macro.lookback must be >= 1 or null, got {lookback}")
        self.num_classes, self.scales, self.layers, self.lookback = num_classes, list(scales), int(layers), lookback
        if self.scales[0] != STEM_SCALE:
            raise ValueError(f"model.scales must start at the stem scale {STEM_SCALE}, got {self.scales}")
        self.reuse_alignment = reuse_alignment
        if scoring not in ("pam", "beta"):
            raise ValueError(f"macro.scoring must be pam or beta, got {scoring!r}")
        self.scoring = scoring
        width = {s: scale_width(base_width, s) for s in self.scales}
        # BN affine=False inside search nets (SPEC §2.1), as in the stage-1 supernet
        self.stem = Stem(3, width[STEM_SCALE], affine=False)
        self.candidates: dict[NodeId, list[NodeId]] = {}
        self.aligns = nn.ModuleDict()
        self.pams = nn.ModuleDict()
        self.cells = nn.ModuleDict()
        ops = genotype.ops
        for l in range(1, self.layers + 1):
            cands = candidate_inputs(l, self.scales, lookback)
            for s in self.scales:
                node = (l, s)
                self.candidates[node] = cands
                self.pams[_key(node)] = PathAttention(width[s], len(cands), mlp_hidden, use_cam=scoring == "pam")
                self.cells[_key(node)] = RSP(width[s], lambda c: FixedCell(c, ops, affine=False), rsp, shuffle)
                for src in cands:
                    name = self._align_name(src, s)
                    if name not in self.aligns:
                        # src[1] is the source's scale (the stem's is 4, so it has the scale-4 width)
                        self.aligns[name] = Align(width[src[1]], width[s], affine=False)
        self.head = SearchHead([width[s] for s in self.scales], head_channels, num_classes)
        self.path_weights: dict[NodeId, torch.Tensor] = {}

    @staticmethod
    def _align_name(src: NodeId, scale: int) -> str:
        return f"{_key(src)}_to{scale}"

    @classmethod
    def from_cfg(cls, cfg: DictConfig, genotype: Genotype, num_classes: int) -> MacroSupernet:
        """Build from `cfg.model`, `cfg.macro` and `cfg.rsp`."""
        m = cfg.model
        return cls(
            genotype,
            num_classes,
            base_width=int(m.base_width),
            scales=list(m.scales),
            layers=int(m.layers),
            lookback=cfg.macro.get("lookback"),
            mlp_hidden=int(cfg.macro.get("mlp_hidden", 16)),
            rsp=bool(cfg.rsp.enabled),
            shuffle=bool(cfg.rsp.get("shuffle", True)),
            head_channels=int(m.head_channels),
            scoring=str(cfg.macro.get("scoring", "pam")),
        )

    def nodes(self) -> list[NodeId]:
        """All searchable nodes in forward order."""
        return list(self.candidates)

    def betas(self) -> dict[NodeId, nn.Parameter]:
        """Per node, its architecture logits beta [K]."""
        return {node: self.pams[_key(node)].beta for node in self.candidates}

    def arch_parameters(self) -> list[nn.Parameter]:
        """All betas and all CAM MLP parameters (the architecture optimiser's params)."""
        return [p for pam in self.pams.values() for p in pam.parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything else: stem, alignments, cells, head."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image -> last-layer node outputs, one per scale; records `path_weights` (detached)."""
        feats: dict[NodeId, torch.Tensor] = {STEM: self.stem(x)}
        stem_hw = tuple(feats[STEM].shape[-2:])
        sizes = {s: scale_size(stem_hw, s) for s in self.scales}
        aligned: dict[tuple[NodeId, int], torch.Tensor] = {}
        self.path_weights = {}
        for node, cands in self.candidates.items():
            scale = node[1]
            zs = []
            for src in cands:
                cached = aligned.get((src, scale)) if self.reuse_alignment else None
                if cached is None:
                    cached = self.aligns[self._align_name(src, scale)](feats[src], sizes[scale])
                    aligned[(src, scale)] = cached
                zs.append(cached)
            mixed, w = self.pams[_key(node)](zs)
            self.path_weights[node] = w.detach()
            feats[node] = self.cells[_key(node)](mixed)
        return [feats[(self.layers, s)] for s in self.scales]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, H, W] -> logits [B, K, H, W] at input resolution."""
        logits = self.head(self.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
