"""Selection of trellis inputs and its evidence: path-score sums, perturbation drops, per-node statistics.

`PathScoreAccumulator` sums the PAM path weights of the arch steps (`macro.select=score`).

Perturbation (DARTS-PT for stage 2):
On the trained `MacroSupernet`, each candidate input k of every node with >= 2 candidates is
removed in turn: its path logit becomes -inf, so the node's PAM weights are renormalised over the
remaining inputs (`PathAttention.forward(drop=k)`). Its score is the harm the removal does on the
scoring batches: the loss increase (`metric=loss`, mean cross-entropy over valid pixels) or the
mIoU drop (`metric=miou`). BatchNorm runs in train mode (batch statistics: the mode the supernet
and its CAM were trained in, as DARTS-PT's projection does), without gradients, and the running
statistics are restored afterwards. A removal changes only its node and the layers after it, so
each batch runs the intact supernet once (`forward_cached`) and every removal recomputes only the
downstream nodes (`forward_without`). Removals are not stacked along the batch: train-mode BN
would mix their statistics. Every quantity is also kept per half (even / odd batches) for the
split-half reliability of the drops. docs/design.md, "Macro selection evidence".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rspnet.errors import ConfigError
from rspnet.metrics import confmat_iou
from rspnet.models.layers import at_label
from rspnet.search_space.evidence import decisiveness, split_half
from rspnet.search_space.trellis import Node

Batch = tuple[torch.Tensor, torch.Tensor]
METRICS = ("loss", "miou")
Rows = dict[Node, list[float]]  # per node one score per candidate input


def node_label(node: Node) -> str:
    """A trellis node (layer, scale) as "(l,s)"."""
    return f"({node[0]},{node[1]})"


def rows_evidence(
    candidates: dict[Node, list[Node]], rows: Rows, halves: tuple[Rows, Rows] | None, as_probs: bool
) -> dict:
    """Per node with a choice: decisiveness of `rows` (entropy, top-1, margin; `as_probs` as in
    `decisiveness`), their means, and the split-half reliability of `halves` (None without halves)."""
    nodes = [n for n, cands in candidates.items() if len(cands) > 1]
    found = decisiveness([rows[n] for n in nodes], as_probs) if nodes else {"per_row": [], "mean": None}
    reliability = None
    if halves is not None and nodes:
        reliability = split_half([halves[0][n] for n in nodes], [halves[1][n] for n in nodes])
    return {
        "per_node": {node_label(n): r for n, r in zip(nodes, found["per_row"])},
        "mean": found["mean"],
        "split_half": reliability,
    }


class PathScoreAccumulator:
    """Per-rank sums of path weights over scoring samples (flat: node after node) + a count.

    Plain tensors rather than module buffers: DDP broadcasts buffers from rank 0 on every
    forward, which would overwrite the other ranks' sums before they are all-reduced.
    `total` is the all-reduced [sums..., count], set at every training epoch end.
    """

    def __init__(self, size: int) -> None:
        self.local = torch.zeros(size + 1, dtype=torch.float64)  # [sums..., count]
        self.total: torch.Tensor | None = None
        self.reset_epoch = self.first_epoch = -1

    def reset(self, epoch: int) -> None:
        """Start accumulating afresh at `epoch`."""
        # a new tensor, not zero_(): ddp_spawn pickles the module into shared memory, so an
        # in-place update would be seen (and counted) by every rank
        self.local = torch.zeros_like(self.local)
        self.reset_epoch = self.first_epoch = epoch

    def add(self, where: slice, weights: torch.Tensor) -> None:
        """Add the path weights [B, K] of one node's candidates (positions `where`)."""
        self.local[where] += weights.sum(0).to("cpu", torch.float64)

    def add_count(self, n: int) -> None:
        """Count `n` more scoring samples."""
        self.local[-1] += n

    @property
    def mean(self) -> torch.Tensor | None:
        """Reduced mean path weight per candidate, or None before any scoring sample."""
        return None if self.total is None or self.total[-1] <= 0 else self.total[:-1] / self.total[-1]

    def state_dict(self) -> dict[str, Any]:
        """The reduced totals (what every rank agrees on) and the window bookkeeping."""
        total = self.local if self.total is None else self.total
        return {"total": total.clone(), "reset_epoch": self.reset_epoch, "first_epoch": self.first_epoch}

    def load_state_dict(self, state: dict[str, Any], world_size: int) -> None:
        """Restore; each rank takes an equal share of the totals so the next all-reduce is exact."""
        total = state["total"]
        if total.shape != self.local.shape:
            raise ConfigError(
                "the checkpoint's path scores do not match this supernet; resume with the same model.* and macro.lookback"
            )
        self.total = total.clone()
        self.local = total / world_size  # a new (per-process) tensor, see reset()
        self.reset_epoch, self.first_epoch = int(state["reset_epoch"]), int(state["first_epoch"])


@dataclass
class PerturbResult:
    """Per node the drop of each candidate (0.0 at single-candidate nodes), overall and per half."""

    metric: str
    drops: Rows
    halves: tuple[Rows, Rows] | None  # even / odd batches (None: 1 batch)
    intact: float  # the intact supernet's loss or mIoU on the scoring batches
    batches: int
    samples: int
    seconds: float


class DropMeter:
    """Per half (even / odd batch) and variant (0 = intact, then one per removal): loss sum, pixels, confusion."""

    def __init__(self, variants: int, num_classes: int, ignore_index: int) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.loss = torch.zeros(2, variants, dtype=torch.float64)
        self.pixels = torch.zeros(2, dtype=torch.float64)
        self.conf = torch.zeros(2, variants, num_classes * num_classes, dtype=torch.long)

    def add(self, half: int, variant: int, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch's logits [B, K, H, W] of `variant` against labels `y` [B, H', W'] (at the label's size)."""
        logits = at_label(logits, y)
        ce = F.cross_entropy(logits.float(), y, ignore_index=self.ignore_index, reduction="sum")
        self.loss[half, variant] += float(ce)
        valid = y != self.ignore_index
        if variant == 0:
            self.pixels[half] += float(valid.sum())
        pairs = y[valid].long() * self.num_classes + logits.argmax(1)[valid]
        self.conf[half, variant] += torch.bincount(pairs, minlength=self.num_classes**2).cpu()

    def values(self, metric: str, halves: tuple[int, ...] = (0, 1)) -> torch.Tensor:
        """Per variant the mean loss or the mIoU over `halves`."""
        rows = list(halves)
        if metric == "loss":
            return self.loss[rows].sum(0) / self.pixels[rows].sum().clamp(min=1.0)
        k = self.num_classes
        conf = self.conf[rows].sum(0).reshape(-1, k, k)
        return torch.stack([confmat_iou(cm)[1].nan_to_num(0.0) for cm in conf])

    def drops(self, metric: str, halves: tuple[int, ...] = (0, 1)) -> list[float]:
        """Per removal the harm it does: loss increase, or intact mIoU minus the mIoU without the input."""
        v = self.values(metric, halves)
        harm = v[1:] - v[0] if metric == "loss" else v[0] - v[1:]
        return harm.tolist()


@contextlib.contextmanager
def train_mode_frozen_stats(net: nn.Module) -> Iterator[None]:
    """Train mode (BN on batch statistics), no gradients; every buffer (running stats) restored afterwards."""
    was_training = net.training
    buffers = {name: b.detach().clone() for name, b in net.named_buffers()}
    net.train()
    try:
        with torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for name, b in net.named_buffers():
                b.copy_(buffers[name])
        net.train(was_training)


def removals(candidates: dict[Node, list[Node]]) -> list[tuple[Node, int]]:
    """(node, candidate index) of every candidate of every node that has a choice (>= 2 candidates)."""
    return [(node, k) for node, cands in candidates.items() if len(cands) > 1 for k in range(len(cands))]


def perturbation_drops(
    net: nn.Module, batches: Iterable[Batch], num_classes: int, ignore_index: int, metric: str = "loss"
) -> PerturbResult:
    """Remove each candidate input of each node in turn and measure the harm on `batches` (see module doc)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    variants = removals(net.candidates)
    meter = DropMeter(len(variants) + 1, num_classes, ignore_index)
    start, count, samples = time.perf_counter(), 0, 0
    with train_mode_frozen_stats(net):
        for i, (x, y) in enumerate(batches):
            half, size = i % 2, tuple(x.shape[-2:])
            intact, feats, aligned = net.forward_cached(x)
            meter.add(half, 0, intact, y)
            for v, (node, k) in enumerate(variants, 1):
                meter.add(half, v, net.forward_without(node, k, size, feats, aligned), y)
            count, samples = count + 1, samples + int(x.shape[0])
    if count == 0:
        raise ValueError("perturbation scoring got no batches")

    def per_node(values: list[float]) -> Rows:
        out = {node: [0.0] * len(cands) for node, cands in net.candidates.items()}
        for (node, k), value in zip(variants, values):
            out[node][k] = float(value)
        return out

    # one batch has no second half to compare with
    halves = (per_node(meter.drops(metric, (0,))), per_node(meter.drops(metric, (1,)))) if count > 1 else None
    return PerturbResult(
        metric=metric,
        drops=per_node(meter.drops(metric)),
        halves=halves,
        intact=float(meter.values(metric)[0]),
        batches=count,
        samples=samples,
        seconds=round(time.perf_counter() - start, 3),
    )
