"""Stage-1 supernet: the fixed Auto-DeepLab trellis with one RSP-wrapped SearchCell per node.

Node (l, s), l = 1..L, sums the aligned outputs of layer l-1 at scales s/2, s, 2s that
exist; layer 0 is the stem (scale 4), which every layer-1 node takes (resized by Align)
so that every node has an input. All cells share one `alpha` [3, 5] (SPEC §2.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.genotype import Genotype, normalized_entropy
from rspnet.models.heads.fcn import FCNHead
from rspnet.search_space.cell import EDGES, RSP, SearchCell
from rspnet.search_space.ops import PRIMITIVES
from rspnet.search_space.trellis import STEM, Align, Node, Trellis, node_key

ARCH_NAMES = ("alpha",)  # parameter names owned by the architecture optimiser


def neighbour_inputs(layer: int, scale: int, scales: Sequence[int]) -> list[Node]:
    """Inputs (layer, scale) of node (layer, scale): layer-1 at s/2, s, 2s; layer 1 reads the stem."""
    if layer == 1:
        return [STEM]
    return [(layer - 1, s) for s in (scale // 2, scale, scale * 2) if s in scales]


def masked_weights(weights: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Op weights [E, N] with the ops where `mask` is 0 removed and each row renormalised to sum 1.

    Renormalising keeps an edge's output at the scale the rest of the supernet was trained on,
    so removing an op measures what the op contributes, not that the edge got quieter.
    """
    if mask is None:
        return weights
    kept = weights * mask.to(weights)
    return kept / kept.sum(-1, keepdim=True).clamp_min(torch.finfo(kept.dtype).tiny)


class SearchTrellis(Trellis):
    """A search net: the trellis and an FCN head, whose forward returns the logits tensor (no dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Image [B, 3, H, W] -> logits [B, K, H, W] at input resolution."""
        return super().forward(x)["out"]

    @staticmethod
    def cfg_kwargs(cfg: DictConfig, layers: int) -> dict[str, Any]:
        """The constructor arguments both supernets read from `cfg.model` and `cfg.rsp`."""
        m = cfg.model
        return dict(
            base_width=int(m.base_width),
            scales=list(m.scales),
            layers=layers,
            rsp=bool(cfg.rsp.enabled),
            shuffle=bool(cfg.rsp.get("shuffle", True)),
            head_channels=int(m.head_channels),
        )


class CellSupernet(SearchTrellis):
    """Stem + L x S nodes (one SearchCell each, RSP-wrapped) + FCN head (affine=False); shared alpha [3, 5]."""

    def __init__(
        self,
        num_classes: int,
        base_width: int,
        scales: Sequence[int],
        layers: int,
        rsp: bool = True,
        shuffle: bool = True,
        head_channels: int = 32,
        in_channels: int = 3,
        alpha_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not alpha_temperature > 0:
            raise ValueError(f"search.alpha_temperature must be > 0, got {alpha_temperature}")
        # op weights are softmax(alpha / T): T < 1 sharpens them (T = 1 is plain DARTS)
        self.alpha_temperature = float(alpha_temperature)
        self.num_classes, self.scales, self.layers, self.rsp = num_classes, list(scales), int(layers), bool(rsp)
        # DARTS init: small random logits so the ops start (almost) uniformly weighted
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(PRIMITIVES)))
        width = self.build_stem(in_channels, base_width, affine=False)
        self.inputs = {}
        self.aligns = nn.ModuleDict()
        self.cells = nn.ModuleDict()
        for l in range(1, self.layers + 1):
            for s in self.scales:
                self.inputs[(l, s)] = neighbour_inputs(l, s, self.scales)
                for src in self.inputs[(l, s)]:
                    self.aligns[self._align_key(src, (l, s))] = Align(width[src[1]], width[s], affine=False)
                self.cells[node_key((l, s))] = RSP(width[s], lambda c: SearchCell(c, affine=False), self.rsp, shuffle)
        self.head = FCNHead([width[s] for s in self.scales], head_channels, num_classes, affine=False)
        self._weights: torch.Tensor | None = None  # softmax(alpha / T) during a forward
        # [3, 5] of 0/1 or None: ops masked out of their MixedOp (perturbation selection, lit/perturb.py)
        self.op_mask: torch.Tensor | None = None
        # [3, 5] of 0/1 or None (nothing removed): the ops progressive shrinking (`search.shrink_every`,
        # lit/perturb.py `shrink_step`) removed for good; on top of op_mask in every forward and in
        # arch_weights(). A plain attribute, not a buffer: SearchModule saves it in the checkpoint's
        # own block, so checkpoints written before shrinking existed load unchanged
        self.op_keep: torch.Tensor | None = None

    @staticmethod
    def _align_key(src: Node, dst: Node) -> str:
        return f"{node_key(src)}_to_{node_key(dst)}"

    @classmethod
    def from_cfg(cls, cfg: DictConfig, num_classes: int) -> CellSupernet:
        """Build from `cfg.model` (base_width, scales, search_layers, head_channels) and `cfg.rsp`."""
        return cls(
            num_classes,
            **cls.cfg_kwargs(cfg, int(cfg.model.search_layers)),
            alpha_temperature=float(cfg.search.get("alpha_temperature", 1.0)),
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        """Parameters whose name is in ARCH_NAMES (just `alpha`)."""
        return [p for n, p in self.named_parameters() if n.split(".")[-1] in ARCH_NAMES]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: stem, alignments, cells, head."""
        return [p for n, p in self.named_parameters() if n.split(".")[-1] not in ARCH_NAMES]

    def combine(self, node: Node, xs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        """Sum of the inputs aligned to the node, then its MixedOp cell under this forward's op weights."""
        h = sum(self.aligns[self._align_key(src, node)](x, size) for src, x in zip(self.inputs[node], xs))
        return self.cells[node_key(node)](h, self._weights)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trellis loop, with the op weights softmax(alpha / T) computed for this forward."""
        # once per forward, shared by all cells (one softmax node: alpha's gradient is summed in one place)
        self._weights = masked_weights(F.softmax(self.alpha / self.alpha_temperature, dim=-1), self.live_mask())
        try:
            return super().forward_features(x)
        finally:
            self._weights = None

    def live_mask(self) -> torch.Tensor | None:
        """The ops a forward uses: `op_keep` (shrinking, permanent) times `op_mask` (a perturbation), or None (all)."""
        if self.op_keep is None:
            return self.op_mask
        return self.op_keep if self.op_mask is None else self.op_keep.to(self.op_mask) * self.op_mask

    def arch_weights(self) -> torch.Tensor:
        """softmax(alpha / T) [3, 5] (the op weights the cells use: ops removed by shrinking at 0, the rest
        renormalised), detached, on CPU."""
        return masked_weights(
            F.softmax(self.alpha.detach().float() / self.alpha_temperature, dim=-1).cpu(), self.op_keep
        )

    def alpha_entropy(self) -> dict[str, Any]:
        """Per-edge entropy of the op weights / log(#ops) (1 = uniform, undecided) and its mean."""
        per_edge = [round(normalized_entropy(row), 6) for row in self.arch_weights().tolist()]
        return {"per_edge": per_edge, "mean": round(sum(per_edge) / len(per_edge), 6)}

    def arch_metrics(self) -> dict[str, float]:
        """Per-edge op weights for logging, keyed `alpha/<src>-<dst>/<op>`."""
        w = self.arch_weights()
        weights = {
            f"alpha/{a}-{b}/{op}": float(w[i, j]) for i, (a, b) in enumerate(EDGES) for j, op in enumerate(PRIMITIVES)
        }
        return weights | {"alpha_entropy": self.alpha_entropy()["mean"]}

    def genotype(self, search: dict[str, Any] | None = None, ops: Sequence[str] | None = None) -> Genotype:
        """Derive the cell: per edge `ops` (a selection rule's choice, e.g. perturbation), else the op with
        the largest softmax(alpha) weight; the weights stay softmax(alpha) (provenance: searched), with the
        ops progressive shrinking removed at 0 (so argmax never picks one)."""
        search = dict(search or {}) | {
            "alpha_entropy": self.alpha_entropy(),
            "alpha_temperature": self.alpha_temperature,
        }
        genotype = Genotype.from_weights(self.arch_weights().tolist(), rsp=self.rsp, search=search, ops=ops)
        genotype.provenance = "searched"
        return genotype
