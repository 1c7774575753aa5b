"""Resource targets: the derived network's cost, its expectation under the cell search's alpha, the penalty.

`search.target_params` / `search.target_gmacs` / `search.target_latency_ms` name the cost of the
**derived** network at the model preset (models/derived.py), not of the supernet. Its blocks (models/blocks.py) split
that cost into a fixed part (stem, alignments, cell skeletons, head, for the trellis the cell
search assumes: `macro_arch=`, else default_macro) and one term per cell edge: every derived
cell holds every edge's op, so op o on one edge costs `per_op[o]` = the sum over the derived
cells of o's cost at that cell's width and resolution. Under the op weights w = softmax(alpha / T)

    E[cost] = fixed + sum_e sum_o w[e, o] * per_op[o]

which is exact for a one-hot alpha. The arch loss gets `target_weight * relu(|E / target - 1| - 0.1)`:
nothing inside the +-10 % band (a plain penalty drags the search towards tiny nets, FasterSeg),
a constant pull outside it. Because alpha stays near uniform at small budgets, the final choice
is also held to the band: among the 5^3 cells, the one whose ops have the largest summed log
weight among those whose derived net is within the band (`CellTarget.select`).

Counting (the last section): parameters and GFLOPs of a built network, and the `stage=summary`
dict of a preset, built on the `meta` device (no memory, no init cost).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.architecture import artifact_arg, load_macro
from rspnet.errors import ConfigError
from rspnet.genotype import Edge, Genotype, MacroArch
from rspnet.models.blocks import Block, Layout, block_macs, block_params, forward_flops
from rspnet.models.derived import DerivedNet
from rspnet.models.nets import build_net
from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES

log = logging.getLogger(__name__)
BAND = 0.1  # the target band: +-10 % around the target
_SLACK = 1e-9  # rounding slack at the band's edges (a cost of exactly target * 1.1 is inside)
Price = Callable[[Block], float]


def param_price(block: Block) -> float:
    """A block's parameter count (the price of `search.target_params`)."""
    return float(block_params(block))


def mac_price(block: Block) -> float:
    """A block's GMACs at batch 1 (the price of `search.target_gmacs`: device-free, unlike a latency)."""
    return block_macs(block) / 1e9


def net_cost(layout: Layout, ops: Sequence[str], macro: MacroArch, price: Price) -> float:
    """Cost of the derived net of (`ops`, `macro`): the sum of its blocks' prices."""
    return sum(n * price(b) for b, n in layout.net_blocks(ops, macro).items())


@dataclass(frozen=True)
class CellCost:
    """The derived net's cost as a function of the cell: `fixed` + per edge `per_op[op]` (PRIMITIVES order)."""

    fixed: float
    per_op: tuple[float, ...]

    @classmethod
    def build(cls, layout: Layout, macro: MacroArch, price: Price) -> CellCost:
        """Price the skeleton (all blocks but the ops) and each op summed over the derived cells of `macro`."""
        fixed = net_cost(layout, (), macro, price)
        cells = layout.op_cells(macro)
        per_op = tuple(sum(n * price(layout.op(name, s)) for s, n in cells.items()) for name in PRIMITIVES)
        return cls(fixed, per_op)

    def expected(self, weights: torch.Tensor) -> torch.Tensor:
        """E[cost] under op weights [edges, ops] (differentiable in `weights`)."""
        per_op = torch.tensor(self.per_op, dtype=weights.dtype, device=weights.device)
        return self.fixed + (weights * per_op).sum()

    def of_ops(self, ops: Sequence[str]) -> float:
        """Cost of the derived net with cell `ops`."""
        return self.fixed + sum(self.per_op[PRIMITIVES.index(op)] for op in ops)

    def all_costs(self) -> list[float]:
        """The cost of every cell (each op on each edge), sorted."""
        return sorted(self.of_ops(ops) for ops in itertools.product(PRIMITIVES, repeat=len(EDGES)))

    def range(self) -> tuple[float, float]:
        """(cheapest, dearest) derived net over all cells."""
        return self.fixed + len(EDGES) * min(self.per_op), self.fixed + len(EDGES) * max(self.per_op)


@dataclass(frozen=True)
class Target:
    """A resource target: `metric` (params | gmacs | latency_ms) = `value` +-BAND, priced per block by `price`."""

    metric: str
    value: float
    weight: float
    price: Price

    @property
    def option(self) -> str:
        return f"search.target_{self.metric}"

    def within(self, cost: float) -> bool:
        """True if `cost` is inside the band (+-10 % of the target)."""
        return abs(cost / self.value - 1) <= BAND + _SLACK

    def penalty(self, expected: torch.Tensor) -> torch.Tensor:
        """`weight * relu(|E / target - 1| - BAND)`: zero inside the band, a constant pull outside."""
        return self.weight * F.relu((expected / self.value - 1).abs() - (BAND + _SLACK))

    def describe(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "band": BAND, "weight": self.weight}

    def rounded(self, cost: float) -> float:
        """A cost as the artifacts record it: 6 decimals; GMACs 9 significant digits (a micro net has ~1e-4)."""
        return float(f"{cost:.9g}") if self.metric == "gmacs" else round(cost, 6)


TARGET_METRICS = ("params", "gmacs", "latency_ms")  # search.target_<metric>


def _set_targets(search: DictConfig) -> list[tuple[str, Any]]:
    """(metric, value) of each `search.target_<metric>` that is set (not null), in TARGET_METRICS order."""
    values = ((m, search.get(f"target_{m}")) for m in TARGET_METRICS)
    return [(m, v) for m, v in values if v is not None]


def target_options(search: DictConfig) -> list[str]:
    """The `search.target_*` options that are set (not null)."""
    return [f"search.target_{m}" for m, _ in _set_targets(search)]


def target_from_cfg(cfg: DictConfig) -> Target | None:
    """The `search.target_*` of the config (None when none is set; one ConfigError for two or a bad value)."""
    s = cfg.search
    chosen = _set_targets(s)
    if len(chosen) > 1:
        given = " and ".join(f"search.target_{m}={v}" for m, v in chosen)
        both = "both" if len(chosen) == 2 else "all"
        raise ConfigError(f"{given} are {both} set; a search targets one cost at a time: set all but one to null")
    if not chosen:
        return None
    metric, value = chosen[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"search.target_{metric}={value} is invalid: expected a positive number")
    weight = float(s.get("target_weight", 1.0))
    if not weight >= 0:
        raise ConfigError(f"search.target_weight={s.target_weight} is invalid: expected a number >= 0")
    if metric == "params":
        return Target(metric, float(value), weight, param_price)
    if metric == "gmacs":
        return Target(metric, float(value), weight, mac_price)
    from rspnet.models.lut import table_for  # only latency targets need a table

    return Target(metric, float(value), weight, table_for(cfg).price)


def assumed_macro(cfg: DictConfig) -> MacroArch:
    """The trellis the derived net of a cell search will have: `macro_arch=FILE`, else default_macro."""
    return load_macro(cfg, artifact_arg(cfg, "macro_arch"), hint="the cost target prices that derived net")


class CellTarget:
    """A resource target for the cell search: the penalty on softmax(alpha / T) and the in-band selection."""

    def __init__(self, target: Target, cost: CellCost, macro_source: str) -> None:
        self.target, self.cost, self.macro_source = target, cost, macro_source

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> CellTarget | None:
        """From `search.target_*` (None when unset), pricing the derived net of `model.*` at `dataset.crop_size`."""
        target = target_from_cfg(cfg)
        if target is None:
            return None
        cost = CellCost.build(Layout.from_cfg(cfg), assumed_macro(cfg), target.price)
        costs = cost.all_costs()
        if not any(target.within(c) for c in costs):
            below = max((c for c in costs if c < target.value), default=None)
            above = min((c for c in costs if c > target.value), default=None)
            near = " and ".join(f"{c:.6g}" for c in (below, above) if c is not None)
            raise ConfigError(
                f"{target.option}={target.value:g} cannot be reached by any cell: the derived nets of "
                f"model={cfg.model.name} with this trellis span {costs[0]:.6g} to {costs[-1]:.6g} {target.metric}, "
                f"the nearest to the target {near} (band +-{BAND:.0%}); choose a target near one of them"
            )
        return cls(target, cost, str(cfg.get("macro_arch") or "default_macro"))

    def penalty(self, weights: torch.Tensor) -> torch.Tensor:
        """The arch-loss term for op weights [edges, ops] (zero inside the band)."""
        return self.target.penalty(self.cost.expected(weights.double())).to(weights.dtype)

    def select(self, weights: Sequence[Sequence[float]]) -> tuple[list[str], dict[str, Any]]:
        """The cell with the largest summed log weight among those within the band (the argmax if it is)."""
        logw = [[math.log(max(float(w), 1e-30)) for w in row] for row in weights]
        argmax = [PRIMITIVES[max(range(len(row)), key=row.__getitem__)] for row in logw]
        cells = list(itertools.product(range(len(PRIMITIVES)), repeat=len(EDGES)))
        inside = [c for c in cells if self.target.within(self.cost.of_ops([PRIMITIVES[i] for i in c]))]
        if inside:
            best = max(inside, key=lambda c: sum(logw[e][i] for e, i in enumerate(c)))
        else:  # none reaches the band (checked when built; kept safe): the closest cost
            best = min(cells, key=lambda c: abs(self.cost.of_ops([PRIMITIVES[i] for i in c]) - self.target.value))
        ops = [PRIMITIVES[i] for i in best]
        info = {
            "argmax_ops": argmax,
            "argmax_cost": self.target.rounded(self.cost.of_ops(argmax)),
            "held_to_band": ops != argmax,
            "cells_in_band": len(inside),
        }
        return ops, info

    def apply(self, genotype: Genotype, weights: torch.Tensor) -> Genotype:
        """`genotype` with its ops held to the band and the target block in `search["target"]`.

        `weights` [edges, ops] are the op weights it was derived from (softmax(alpha / T), EDGES order).
        """
        ops, info = self.select(weights.tolist())
        cost = self.cost.of_ops(ops)
        by_edge = {(e.src, e.dst): e for e in genotype.edges}
        genotype.edges = [Edge(a, b, op, by_edge[(a, b)].weights) for (a, b), op in zip(EDGES, ops)]
        genotype.search = dict(genotype.search) | {
            "target": self.target.describe()
            | {
                "expected": self.target.rounded(float(self.cost.expected(weights.double()))),
                "derived": self.target.rounded(cost),
                "within_band": self.target.within(cost),
                "macro": self.macro_source,
                **info,
            }
        }
        return genotype


# ---- counting: parameters and GFLOPs of a built network -------------------------------------------------

PARTS = ("stem", "trellis", "head")
GFLOPS_CONVENTION = "torch.utils.flop_counter: 2 FLOPs per multiply-accumulate (GFLOPs = 2 x GMACs), batch 1"


def count_params(cfg: DictConfig, genotype: Genotype, macro: MacroArch) -> int:
    """Parameters of the derived network for cfg.model/rsp/head/dataset, built on the meta device (no memory)."""
    with torch.device("meta"):
        net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
    return sum(p.numel() for p in net.parameters())


def param_counts(net: nn.Module) -> dict[str, int]:
    """Parameter count per top-level part of a DerivedNet (stem, trellis, head)."""
    return {part: sum(p.numel() for p in getattr(net, part).parameters()) for part in PARTS}


def count_gflops(net: nn.Module, input_size: tuple[int, int]) -> float:
    """GFLOPs of one forward pass at batch 1, on a tensor on the model's device.

    Convention: `torch.utils.flop_counter` counts 2 FLOPs per multiply-accumulate, so this is
    2x the "GMACs" that some papers (and fvcore) report as FLOPs. Only matmul/conv-type ops are counted.
    """
    device = next(net.parameters()).device
    return forward_flops(net, torch.zeros(1, 3, *input_size, device=device)) / 1e9


def summarize(cfg: DictConfig, genotype: Genotype, macro: MacroArch, flops: bool = True) -> dict:
    """The summary dict for `cfg.model`/`cfg.rsp`/`cfg.head` at `dataset.crop_size` (built on meta)."""
    with torch.device("meta"):
        net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
    parts = param_counts(net)
    size = tuple(int(v) for v in cfg.dataset.crop_size)
    gflops = count_gflops(net, size) if flops else None
    return {
        "params": sum(parts.values()),
        "params_by_part": parts,
        "gflops": round(gflops, 3) if gflops is not None else None,
        "gmacs": round(gflops / 2, 3) if gflops is not None else None,
        "gflops_convention": GFLOPS_CONVENTION,
        "input_size": list(size),
        "model": str(cfg.model.name),
        "head": str(cfg.head.name),
        "rsp": bool(cfg.rsp.enabled),
        "layers": macro.layers,
        "cells_per_node": int(cfg.model.cells_per_node),
        "genotype_ops": genotype.ops,
    }


def summarize_family(cfg: DictConfig, spec: dict) -> dict:
    """The summary of a `net` group entry built from its keys alone (net=enet ...), on meta, at `dataset.crop_size`."""
    with torch.device("meta"):
        net = build_net(cfg, spec, int(cfg.dataset.num_classes))
    size = tuple(int(v) for v in cfg.dataset.crop_size)
    gflops = count_gflops(net, size)
    return {
        "net": spec["name"],
        "params": sum(p.numel() for p in net.parameters()),
        "gflops": round(gflops, 3),
        "gmacs": round(gflops / 2, 3),
        "gflops_convention": GFLOPS_CONVENTION,
        "input_size": list(size),
        "num_classes": int(cfg.dataset.num_classes),
    }
