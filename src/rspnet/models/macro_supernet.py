"""Stage-2 supernet: the searched cell is fixed; PAM weighs every earlier node as an input.

Node (l, s), l = 1..L, takes as candidates the stem (layer 0, scale 4) and every node of
layers max(1, l - lookback)..l-1 (lookback None = all). Each candidate is aligned to the
node's C x H x W (1x1 conv-BN + bilinear resize, SPEC §2.4). An earlier node's alignment
to a target scale is computed once per forward and shared by all nodes of that scale, so
alignments cost O(L * S^2) instead of O(L^2 * S^2) (`reuse_alignment=False` disables the
cache; the benchmark uses it to measure the saving).

`forward_cached` and `forward_without` serve the perturbation selection (`macro.select=perturb`,
lit/macro_perturb.py): removing candidate k of node (l, s) changes only that node and the layers
after it, so the intact forward's node outputs and alignments upstream of it are reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.genotype import Genotype
from rspnet.models.heads.fcn import FCNHead
from rspnet.models.supernet import SearchTrellis
from rspnet.search_space.attention import PathAttention
from rspnet.search_space.cell import RSP, FixedCell
from rspnet.search_space.trellis import STEM, Align, Node, node_key

Aligned = dict[tuple[Node, int], torch.Tensor]  # (source node, target scale) -> aligned output


def candidate_inputs(layer: int, scales: Sequence[int], lookback: int | None) -> list[Node]:
    """Candidate input nodes of any node at `layer`: the stem, then earlier layers' nodes."""
    first = 1 if lookback is None else max(1, layer - int(lookback))
    return [STEM] + [(l, s) for l in range(first, layer) for s in scales]


class MacroSupernet(SearchTrellis):
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
        self.reuse_alignment = reuse_alignment
        if scoring not in ("pam", "beta"):
            raise ValueError(f"macro.scoring must be pam or beta, got {scoring!r}")
        self.scoring = scoring
        # BN affine=False inside search nets (SPEC §2.1), as in the stage-1 supernet
        width = self.build_stem(3, base_width, affine=False)
        self.inputs = {}
        self.aligns = nn.ModuleDict()
        self.pams = nn.ModuleDict()
        self.cells = nn.ModuleDict()
        ops = self.cell_ops = list(genotype.ops)  # the fixed cell (resource targets price the derived net with it)
        for l in range(1, self.layers + 1):
            cands = candidate_inputs(l, self.scales, lookback)
            for s in self.scales:
                node = (l, s)
                self.inputs[node] = cands
                self.pams[node_key(node)] = PathAttention(width[s], len(cands), mlp_hidden, use_cam=scoring == "pam")
                self.cells[node_key(node)] = RSP(width[s], lambda c: FixedCell(c, ops, affine=False), rsp, shuffle)
                for src in cands:
                    name = self._align_name(src, s)
                    if name not in self.aligns:
                        # src[1] is the source's scale (the stem's is 4, so it has the scale-4 width)
                        self.aligns[name] = Align(width[src[1]], width[s], affine=False)
        self.head = FCNHead([width[s] for s in self.scales], head_channels, num_classes, affine=False)
        self.path_weights: dict[Node, torch.Tensor] = {}
        self._aligned: Aligned = {}  # per forward: see Aligned
        self._drop: tuple[Node, int] | None = None  # (node, candidate) removed by forward_without

    @staticmethod
    def _align_name(src: Node, scale: int) -> str:
        return f"{node_key(src)}_to{scale}"

    @classmethod
    def from_cfg(cls, cfg: DictConfig, genotype: Genotype, num_classes: int) -> MacroSupernet:
        """Build from `cfg.model`, `cfg.macro` and `cfg.rsp`."""
        return cls(
            genotype,
            num_classes,
            **cls.cfg_kwargs(cfg, int(cfg.model.layers)),
            lookback=cfg.macro.get("lookback"),
            mlp_hidden=int(cfg.macro.get("mlp_hidden", 16)),
            scoring=str(cfg.macro.get("scoring", "pam")),
        )

    @property
    def candidates(self) -> dict[Node, list[Node]]:
        """Per node, its candidate inputs (the trellis' `inputs`; PAM scores them)."""
        return self.inputs

    def nodes(self) -> list[Node]:
        """All searchable nodes in forward order."""
        return list(self.inputs)

    def betas(self) -> dict[Node, nn.Parameter]:
        """Per node, its architecture logits beta [K]."""
        return {node: self.pams[node_key(node)].beta for node in self.inputs}

    def arch_parameters(self) -> list[nn.Parameter]:
        """All betas and all CAM MLP parameters (the architecture optimiser's params)."""
        return [p for pam in self.pams.values() for p in pam.parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything else: stem, alignments, cells, head."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def combine(self, node: Node, xs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        """PAM over the candidates aligned to the node (from this forward's cache), then the fixed cell."""
        scale, zs = node[1], []
        for src, x in zip(self.inputs[node], xs):
            z = self._aligned.get((src, scale)) if self.reuse_alignment else None
            if z is None:
                z = self._aligned[(src, scale)] = self.aligns[self._align_name(src, scale)](x, size)
            zs.append(z)
        drop = self._drop[1] if self._drop is not None and self._drop[0] == node else None
        mixed, w = self.pams[node_key(node)](zs, drop=drop)
        self.path_weights[node] = w.detach()
        return self.cells[node_key(node)](mixed)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trellis loop with a fresh alignment cache; records `path_weights` (detached)."""
        self._aligned, self.path_weights = {}, {}
        try:
            return super().forward_features(x)
        finally:
            self._aligned = {}  # the cache holds activations: free them with the forward

    def _logits(self, feats: dict[Node, torch.Tensor], size: tuple) -> torch.Tensor:
        return self.head([feats[(self.layers, s)] for s in self.scales], size)["out"]

    def forward_cached(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[Node, torch.Tensor], Aligned]:
        """Logits of the intact supernet, every node's output and every alignment (for `forward_without`)."""
        self._aligned, self.path_weights = {}, {}
        try:
            feats = self.forward_nodes({STEM: self.stem(x)})
            aligned = dict(self._aligned)
        finally:
            self._aligned = {}
        return self._logits(feats, tuple(x.shape[-2:])), feats, aligned

    def forward_without(
        self, node: Node, k: int, size: tuple, feats: dict[Node, torch.Tensor], aligned: Aligned
    ) -> torch.Tensor:
        """Logits [B, K, H, W] with candidate `k` of `node` removed (its PAM renormalised over the others).

        `feats`/`aligned` come from `forward_cached` on the same batch; the nodes of earlier layers and
        the other nodes of `node`'s layer do not depend on `node`, so they (and their alignments) are reused.
        """
        keep = {n: f for n, f in feats.items() if n[0] < node[0] or (n[0] == node[0] and n != node)}
        self._aligned = {key: z for key, z in aligned.items() if key[0] in keep}
        self._drop = (node, k)
        try:
            return self._logits(self.forward_nodes(keep), size)
        finally:
            self._aligned, self._drop = {}, None
