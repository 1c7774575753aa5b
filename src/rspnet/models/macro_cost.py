"""Resource targets in the macro search: the derived net's expected cost over path choices.

With the cell fixed, the trellis decides which path alignments exist and which nodes are live
(a node that feeds no later node is not built). Node n keeps input k with probability
q[n, k] = min(1, top_k * softmax(beta_n)[k]); a node is live with probability

    live(last layer) = 1,   live(m) = 1 - prod over later nodes n reading m of (1 - live(n) q[n, m])

(independence assumed), and E[cost] = stem + head + sum_n live(n) (cells(n) + sum_k q[n, k] align(k -> n)),
exact when q is the 0/1 choice of a macro.json. The penalty is the cell stage's (models/cost.py):
`target_weight * relu(|E / target - 1| - 0.1)` on the arch loss. The top-k choice by path score
is then held to the band by greedy swaps: while the derived net is outside it, take the
single-input swap that moves the cost towards the target for the least loss of path score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from rspnet.genotype import MacroArch, MacroInput, MacroNode
from rspnet.models.blocks import Layout
from rspnet.models.cost import Target, net_cost, target_from_cfg
from rspnet.search_space.trellis import STEM, Node


class MacroTarget:
    """A resource target for the macro search over `candidates` (node -> its candidate inputs)."""

    def __init__(
        self, target: Target, layout: Layout, ops: Sequence[str], candidates: dict[Node, list[Node]], top_k: int
    ) -> None:
        self.target, self.layout, self.ops, self.top_k = target, layout, list(ops), int(top_k)
        self.candidates = {n: list(c) for n, c in candidates.items()}
        price = target.price
        self.fixed = price(layout.stem()) + price(layout.head_block())
        cell = {s: price(layout.cell(s)) + sum(price(layout.op(op, s)) for op in ops) for s in layout.scales}
        self.cells = {n: layout.cells_per_node * cell[n[1]] for n in self.candidates}
        self.aligns = {n: [price(layout.align(src[1], n[1])) for src in c] for n, c in self.candidates.items()}
        self.last = max(n[0] for n in self.candidates)

    @classmethod
    def from_cfg(cls, cfg: DictConfig, ops: Sequence[str], candidates: dict[Node, list[Node]]) -> MacroTarget | None:
        """From `search.target_*` (None when unset) for the derived net of `model.*` with cell `ops`."""
        target = target_from_cfg(cfg)
        if target is None:
            return None
        return cls(target, Layout.from_cfg(cfg), ops, candidates, int(cfg.macro.top_k))

    def expected(self, probs: dict[Node, torch.Tensor]) -> torch.Tensor:
        """E[cost] given per node the probability that each candidate is kept (differentiable)."""
        total = torch.tensor(self.fixed, dtype=torch.float64)
        unused: dict[Node, torch.Tensor] = {}  # P(no live later node reads this node)
        for node in sorted(self.candidates, key=lambda n: -n[0]):
            live = torch.ones((), dtype=torch.float64) if node[0] == self.last else 1 - unused.get(node, 1.0)
            q = probs[node].double()
            total = total + live * (self.cells[node] + (q * torch.tensor(self.aligns[node], dtype=q.dtype)).sum())
            for k, src in enumerate(self.candidates[node]):
                if src != STEM:
                    unused[src] = unused.get(src, 1.0) * (1 - live * q[k])
        return total

    def probs(self, betas: dict[Node, torch.Tensor]) -> dict[Node, torch.Tensor]:
        """q[n, k] = min(1, top_k * softmax(beta_n)[k]): the chance the top-k keeps candidate k."""
        return {n: (self.top_k * torch.softmax(b, 0)).clamp(max=1) for n, b in betas.items()}

    def penalty(self, betas: dict[Node, torch.Tensor]) -> torch.Tensor:
        """The arch-loss term (zero inside the band), in the dtype of beta."""
        dtype = next(iter(betas.values())).dtype
        return self.target.penalty(self.expected(self.probs(betas))).to(dtype)

    def cost(self, macro: MacroArch) -> float:
        """The derived net's cost with this cell and trellis."""
        return net_cost(self.layout, self.ops, macro, self.target.price)

    def choice_cost(self, chosen: dict[Node, list[Node]]) -> float:
        """`cost` of the trellis whose node n reads `chosen[n]`, from this target's tables (fast: no blocks)."""
        live = {n for n in chosen if n[0] == self.last}
        total = self.fixed
        for node in sorted(chosen, key=lambda n: -n[0]):
            if node in live:
                cands = self.candidates[node]
                total += self.cells[node] + sum(self.aligns[node][cands.index(src)] for src in chosen[node])
                live.update(src for src in chosen[node] if src != STEM)
        return total

    def apply(self, macro: MacroArch, scores: dict[Node, list[float]], betas: dict[Node, torch.Tensor]) -> MacroArch:
        """`macro` held to the band by greedy swaps, with the target block in `search["target"]`."""
        chosen = {(n.layer, n.scale): [(i.layer, i.scale) for i in n.inputs] for n in macro.nodes}
        first = cost = self.choice_cost(chosen)
        swaps = 0
        while not self.target.within(cost):
            step = self._best_swap(chosen, scores, cost)
            if step is None:
                break
            chosen, cost = step
            swaps += 1
        out = self._macro(macro, chosen, scores)
        cost = self.cost(out)  # from the blocks of the derived net (choice_cost is the same sum, faster)
        with torch.no_grad():
            expected = float(self.expected(self.probs(betas)))
        r = self.target.rounded
        out.search = dict(macro.search) | {
            "target": self.target.describe()
            | {"expected": r(expected), "derived": r(cost), "within_band": self.target.within(cost)}
            | {"by_score_cost": r(first), "held_to_band": swaps > 0, "swaps": swaps}
        }
        return out

    def _macro(self, macro: MacroArch, chosen: dict[Node, list[Node]], scores: dict[Node, list[float]]) -> MacroArch:
        nodes = []
        for node, srcs in chosen.items():
            cands = self.candidates[node]
            inputs = tuple(MacroInput(s[0], s[1], round(float(scores[node][cands.index(s)]), 6)) for s in srcs)
            nodes.append(MacroNode(node[0], node[1], inputs))
        return MacroArch(macro.layers, list(macro.scales), macro.top_k, nodes, dict(macro.search), macro.provenance)

    def _best_swap(
        self, chosen: dict[Node, list[Node]], scores: dict[Node, list[float]], cost: float
    ) -> tuple[dict[Node, list[Node]], float] | None:
        """The one-input swap that brings the cost closest to the band per unit of path score lost."""
        gap = abs(cost - self.target.value)
        best: tuple[float, dict[Node, list[Node]], float] | None = None
        for node, srcs in chosen.items():
            cands = self.candidates[node]
            for i, old in enumerate(srcs):
                for new in (c for c in cands if c not in srcs):
                    trial = dict(chosen) | {node: srcs[:i] + [new] + srcs[i + 1 :]}
                    c = self.choice_cost(trial)
                    gain = gap - abs(c - self.target.value)
                    if gain <= 0:
                        continue
                    loss = scores[node][cands.index(old)] - scores[node][cands.index(new)]
                    key = (max(loss, 0.0) + 1e-9) / gain
                    if best is None or key < best[0]:
                        best = (key, trial, c)
        return None if best is None else (best[1], best[2])
