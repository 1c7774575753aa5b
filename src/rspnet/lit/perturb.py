"""Selecting the cell after the search, and the evidence for the choice (SPEC 2.7).

`search.select`:
* `argmax` (paper): per edge the op with the largest softmax(alpha) weight.
* `perturb` (DARTS-PT, Wang et al. ICLR 2021): on the trained supernet, remove each op of an
  edge from its MixedOp (its weight zeroed, the rest renormalised: `models/supernet.py`
  `masked_weights`) and measure the increase of the cross-entropy on the scoring set; keep per
  edge the op whose removal hurts most. Edges are decided in EDGES order; a decided edge is
  projected to its op (DARTS-PT) and, with `search.perturb_retune_steps > 0`, the weights are
  re-tuned for that many SGD steps on the weight half before the next edge is scored.

Progressive shrinking (`search.shrink_every`, `shrink_step`) uses the same scores during the search:
at its shrink points every edge loses the op whose removal hurts least, for good (`CellSupernet.op_keep`);
`perturb` then scores and chooses only the ops left, and the evidence compares only those.

The scoring set (`search.perturb_split`) is the arch half of train (`arch`, never seen by the
weight optimiser) or the held-out selection slice of train (`select`); never val. Under
`search.null=true` its labels are `null_labels` too. Scoring runs on a copy of the supernet with
batch-statistics BatchNorm (train mode), as the search's own steps do; the running statistics
of the searched net are never touched.

Evidence, whatever the rule (`evidence` in genotype.json's `search` block): the decisiveness of
softmax(alpha) per edge, and split-half reliability, for which every scoring batch is split into
its even and odd samples, each half forwarded on its own (its own BatchNorm statistics), so the
two halves share no image and no statistic. The alpha score of a half is the negative gradient
of the half's summed cross-entropy w.r.t. alpha, accumulated in one extra pass without an update
(d/d alpha through a softmax sums to zero per edge: the scores are row-centred by construction).
With `perturb`, the perturbation scores of each half are rank-correlated the same way.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ConfigError
from rspnet.metrics import SegMetric
from rspnet.models.layers import at_label
from rspnet.search_space.cell import EDGES
from rspnet.search_space.evidence import decisiveness, null_labels, null_mode, split_half
from rspnet.search_space.ops import PRIMITIVES

SELECTS = ("argmax", "perturb")
PERTURB_SPLITS = ("arch", "select")
NULL_STEP = 2**40  # null_labels step offset of the scoring set: disjoint from the search's own steps
HALVES = ("a", "b")


@dataclass(frozen=True)
class Scoring:
    """What the scoring passes measure against: summed cross-entropy on real or null labels."""

    num_classes: int
    ignore_index: int
    null_seed: int | None = None  # not None: labels are null_labels keyed by (seed, NULL_STEP + batch)

    @classmethod
    def from_cfg(cls, cfg: DictConfig, num_classes: int) -> Scoring:
        """The scoring of `cfg`: null labels under `search.null=labels` (the grad null scores on real labels)."""
        null = null_mode(cfg.search) == "labels"
        return cls(num_classes, int(cfg.dataset.get("ignore_index", 255)), int(cfg.get("seed", 0)) if null else None)

    def labels(self, batch: int, y: torch.Tensor) -> torch.Tensor:
        """The labels batch `batch` is scored against (the null search's are unlearnable noise)."""
        if self.null_seed is None:
            return y
        return null_labels(y, self.num_classes, self.ignore_index, self.null_seed, NULL_STEP + batch)

    def loss_sum(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(summed cross-entropy, labelled pixels) at the label's resolution: sums, so halves and batches add up."""
        loss = F.cross_entropy(at_label(logits, y).float(), y, ignore_index=self.ignore_index, reduction="sum")
        return loss, int((y != self.ignore_index).sum())


def half_batches(loader: Iterable, scoring: Scoring, device: torch.device) -> Iterator[tuple[int, Any, Any]]:
    """(half 0/1, x, y) for the even and the odd samples of every batch, labels as `scoring` says.

    A half of one sample is forwarded with a copy of itself whose labels are all ignored: BatchNorm
    on batch statistics then sees the one image's statistics (mean and variance of two equal
    samples are those of one), which alone gives too few values per channel at the coarsest
    scales, and the copy adds nothing to the loss or the counts.
    """
    for i, (x, y) in enumerate(loader):
        y = scoring.labels(i, y)
        for half in (0, 1):
            xh, yh = x[half::2], y[half::2]
            if len(xh) == 1:
                xh, yh = torch.cat([xh, xh]), torch.cat([yh, torch.full_like(yh, scoring.ignore_index)])
            if len(xh):
                yield half, xh.to(device), yh.to(device)


def check_options(s: DictConfig) -> tuple[str, str, int]:
    """(select, perturb_split, perturb_retune_steps) of `cfg.search`, or one ConfigError naming the option."""
    select = str(s.get("select", "argmax"))
    if select not in SELECTS:
        raise ConfigError(f"search.select={select} is unknown; use one of: {', '.join(SELECTS)}")
    split = str(s.get("perturb_split", "arch"))
    if split not in PERTURB_SPLITS:
        raise ConfigError(
            f"search.perturb_split={split} is unknown; use arch (the arch half of train) or select "
            "(the held-out slice of train); val is never scored on"
        )
    steps = s.get("perturb_retune_steps", 0)
    if not _is_int(steps) or steps < 0:
        raise ConfigError(f"search.perturb_retune_steps={steps} must be an integer >= 0")
    check_shrink_options(s)
    return select, split, steps


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ShrinkOptions:
    """Progressive shrinking (`search.shrink_*`): every `every` epochs after the warm-up (0 = off), on the
    first `batches` batches of the scoring split (None = all), down to `min_ops` ops per edge."""

    every: int = 0
    batches: int | None = 8
    min_ops: int = 1

    def due(self, epochs_done: int, warmup_epochs: int) -> bool:
        """A shrink step at the end of epoch `epochs_done` (1-based): every `every` epochs of arch steps."""
        searched = epochs_done - warmup_epochs
        return self.every > 0 and searched > 0 and searched % self.every == 0


def check_shrink_options(s: DictConfig) -> ShrinkOptions:
    """The `search.shrink_*` options, or one ConfigError naming the option."""
    every, batches, min_ops = s.get("shrink_every", 0), s.get("shrink_batches", 8), s.get("shrink_min_ops", 1)
    if not _is_int(every) or every < 0:
        raise ConfigError(f"search.shrink_every={every} must be an integer >= 0 (epochs between shrink steps; 0 = off)")
    if batches is not None and (not _is_int(batches) or batches < 1):
        raise ConfigError(
            f"search.shrink_batches={batches} must be an integer >= 1, or null for the whole scoring split"
        )
    if not _is_int(min_ops) or not 1 <= min_ops < len(PRIMITIVES):
        raise ConfigError(
            f"search.shrink_min_ops={min_ops} must be an integer from 1 to {len(PRIMITIVES) - 1} (ops left per edge)"
        )
    return ShrinkOptions(every, batches, min_ops)


def check_select_cfg(cfg: DictConfig) -> None:
    """`check_options`; `search.perturb_split=select` only where a slice of train is held out (never val);
    `perturb` and shrinking not with a resource target (its band selection ranks cells by alpha over all
    ops); shrinking not under the grad null (it would score on real labels)."""
    from rspnet.data.selection import Selection

    select, split, _ = check_options(cfg.search)
    from rspnet.models.cost import target_options

    targets = target_options(cfg.search)
    if select == "perturb" and targets:
        raise ConfigError(
            f"search.select=perturb with {targets[0]} is not supported: the target's in-band selection "
            "ranks cells by softmax(alpha); use search.select=argmax with a target, or drop the target"
        )
    shrink = check_shrink_options(cfg.search)
    if shrink.every and targets:
        raise ConfigError(
            f"search.shrink_every={shrink.every} with {targets[0]} is not supported: shrinking removes ops "
            "the target's penalty and in-band selection still count on; drop the target or set search.shrink_every=0"
        )
    if shrink.every and null_mode(cfg.search) == "grad":
        raise ConfigError(
            f"search.shrink_every={shrink.every} with search.null=grad is not supported: shrinking scores ops on "
            "real labels, which puts the architecture signal back into the grad null; use search.null=labels"
        )
    selection = Selection.from_cfg(cfg)
    if split == "select" and not selection.holds_out:
        raise ConfigError(
            "search.perturb_split=select scores on the held-out slice of train, but nothing is held out "
            f"(train.select={selection.select}); use train.select=holdout or search.perturb_split=arch"
        )


def measure(net: nn.Module, loader: Iterable, scoring: Scoring) -> dict[str, float]:
    """Mean cross-entropy of `net` on the scoring set ("all") and on its halves ("a", "b"), and mIoU ("miou")."""
    sums = {k: [0.0, 0] for k in ("all", *HALVES)}
    metric = SegMetric(scoring.num_classes, scoring.ignore_index, sync_on_compute=False)
    device = next(net.parameters()).device
    net.train()  # batch statistics, as in the search's steps; `net` is a copy, its running stats are scratch
    with torch.no_grad():
        for half, x, y in half_batches(loader, scoring, device):
            logits = net(x)
            loss, pixels = scoring.loss_sum(logits, y)
            for key in ("all", HALVES[half]):
                sums[key][0] += float(loss)
                sums[key][1] += pixels
            # max(1).indices: the argmax (first maximum), ~5x faster than argmax(1) on CPU (torch 2.13, 1 thread)
            metric.update(at_label(logits, y).max(1).indices.cpu(), y.cpu())
    losses = {k: total / pixels if pixels else float("nan") for k, (total, pixels) in sums.items()}
    return losses | {"miou": float(metric.compute()["miou"])}


def alpha_gradient_scores(net: nn.Module, loader: Iterable, scoring: Scoring) -> dict[str, list[list[float]]]:
    """Per half, -d(mean cross-entropy)/d alpha [3, 5], accumulated over the scoring set without an update."""
    (alpha,) = net.arch_parameters()
    grads = [torch.zeros_like(alpha), torch.zeros_like(alpha)]
    pixels = [0, 0]
    device = alpha.device
    net.train()
    for half, x, y in half_batches(loader, scoring, device):
        loss, n = scoring.loss_sum(net(x), y)
        if n:
            (g,) = torch.autograd.grad(loss, alpha)  # only alpha: no weight .grad is written
            grads[half] += g
            pixels[half] += n
    if not all(pixels):
        return {}  # a scoring set of one image has no second half
    return {h: (-grads[i] / pixels[i]).tolist() for i, h in enumerate(HALVES)}


def _round_rows(rows: list[list[float | None]]) -> list[list[float | None]]:
    return [[None if v is None else round(float(v), 6) for v in row] for row in rows]


def _live_rows(rows: list[list[Any]], keep: torch.Tensor | None) -> list[list[Any]]:
    """Each row's entries of the ops still in `keep` (all without one): what decisiveness and split-half
    compare, so ops removed by shrinking neither tie at zero nor count as candidates."""
    return [[v for j, v in enumerate(row) if j in live_ops(keep, e)] for e, row in enumerate(rows)]


def perturb_edge(
    net: nn.Module,
    loader: Iterable,
    scoring: Scoring,
    mask: torch.Tensor,
    edge: int,
    base: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Scores of removing each op of `edge` under `mask`: loss increase ("all", "a", "b") and mIoU drop.

    Ops already out of `mask` (pruned by shrinking) are not measured: their entries are None.
    `base`: `measure` under `mask` when the caller has it (several edges scored under one mask).
    """
    net.op_mask = mask
    base = base if base is not None else measure(net, loader, scoring)
    rows: dict[str, list[float | None]] = {"all": [], "a": [], "b": [], "miou_drop": []}
    for j in range(len(PRIMITIVES)):
        if not mask[edge, j]:
            for row in rows.values():
                row.append(None)
            continue
        removed = mask.clone()
        removed[edge, j] = 0.0
        net.op_mask = removed
        m = measure(net, loader, scoring)
        for key in ("all", *HALVES):
            rows[key].append(m[key] - base[key])
        rows["miou_drop"].append(base["miou"] - m["miou"])
    net.op_mask = mask
    return rows


def live_ops(mask: torch.Tensor | None, edge: int) -> list[int]:
    """Indices of the ops of `edge` still in `mask` (all of them without one)."""
    return [j for j in range(len(PRIMITIVES)) if mask is None or mask[edge, j]]


def start_mask(net: nn.Module) -> torch.Tensor:
    """[3, 5] 0/1: the ops the supernet still has (`op_keep` after progressive shrinking, else all)."""
    device = next(net.parameters()).device
    keep = getattr(net, "op_keep", None)
    return keep.to(device).clone() if keep is not None else torch.ones(len(EDGES), len(PRIMITIVES), device=device)


def perturb_select(
    net: nn.Module, loader: Iterable, scoring: Scoring, retune: Callable[[nn.Module], None] | None = None
) -> dict[str, Any]:
    """DARTS-PT over the cell's edges (on `net`, which it modifies: pass a copy): ops and per-edge scores.

    Only the ops the supernet still has are scored and chosen (`start_mask`: none removed by shrinking).
    """
    mask = start_mask(net)
    ops: list[str] = []
    rows: dict[str, list[list[float | None]]] = {"all": [], "a": [], "b": [], "miou_drop": []}
    try:
        for e in range(len(EDGES)):
            scores = perturb_edge(net, loader, scoring, mask, e)
            for key, row in scores.items():
                rows[key].append(row)
            best = max(live_ops(mask, e), key=lambda j: scores["all"][j])
            ops.append(PRIMITIVES[best])
            mask[e] = 0.0
            mask[e, best] = 1.0  # project the decided edge onto its op (DARTS-PT)
            net.op_mask = mask
            if retune is not None and e < len(EDGES) - 1:
                retune(net)
    finally:
        net.op_mask = None
    return {"ops": ops, "rows": rows}


def shrink_step(net: nn.Module, loader: Iterable, scoring: Scoring, min_ops: int) -> dict[str, Any]:
    """One step of progressive shrinking (on `net`, a copy it modifies): per edge with more than `min_ops`
    live ops, the perturbation scores of its live ops (as `perturb_edge`) and the op whose removal raises
    the loss least, i.e. the weakest (ties: the first in PRIMITIVES).

    Every edge is scored under the same mask (the supernet as trained), so the removals do not depend on
    the order of EDGES; the base loss is measured once. Returns {"keep": the new [3, 5] mask (CPU),
    "pruned": {edge index: op}, "rows": per edge the scores (None: not scored)}.
    """
    mask = start_mask(net)
    keep = mask.clone()
    pruned: dict[int, str] = {}
    rows: dict[str, list[list[float | None]]] = {"all": [], "a": [], "b": [], "miou_drop": []}
    base = None
    try:
        for e in range(len(EDGES)):
            live = live_ops(mask, e)
            if len(live) <= min_ops:
                scores: dict[str, list[float | None]] = {key: [None] * len(PRIMITIVES) for key in rows}
            else:
                if base is None:  # once, and not at all when every edge is down to min_ops
                    net.op_mask = mask
                    base = measure(net, loader, scoring)
                scores = perturb_edge(net, loader, scoring, mask, e, base)
                weakest = min(live, key=lambda j: scores["all"][j])
                keep[e, weakest] = 0.0
                pruned[e] = PRIMITIVES[weakest]
            for key, row in scores.items():
                rows[key].append(row)
    finally:
        net.op_mask = None
    return {"keep": keep.cpu(), "pruned": pruned, "rows": rows}


def retune_weights(net: nn.Module, loader: Iterable, s: DictConfig, steps: int, ignore_index: int = 255) -> None:
    """`steps` SGD steps of the weights (search.weight_lr, momentum, wd, grad_clip) on the weight half, real labels."""
    opt = torch.optim.SGD(
        net.weight_parameters(),
        lr=float(s.weight_lr),
        momentum=float(s.weight_momentum),
        weight_decay=float(s.weight_wd),
    )
    device = next(net.parameters()).device
    net.train()
    for x, y in itertools.islice(itertools.cycle(loader), steps):
        opt.zero_grad()
        F.cross_entropy(net(x.to(device)).float(), y.to(device), ignore_index=ignore_index).backward()
        if s.get("grad_clip"):
            nn.utils.clip_grad_norm_(net.weight_parameters(), float(s.grad_clip))
        opt.step()
    net.zero_grad(set_to_none=True)


def alpha_evidence(net: nn.Module, loader: Iterable | None, scoring: Scoring) -> dict[str, Any]:
    """Decisiveness of softmax(alpha) per edge; split-half of the alpha-gradient scores (None without data);
    both over the ops the supernet still has (`op_keep`)."""
    keep = getattr(net, "op_keep", None)
    out: dict[str, Any] = {"decisiveness": decisiveness(_live_rows(net.arch_weights().tolist(), keep), as_probs=True)}
    if loader is None:
        return out | {"split_half": None}
    halves = alpha_gradient_scores(copy.deepcopy(net), loader, scoring)
    return out | {
        "split_half": split_half(_live_rows(halves["a"], keep), _live_rows(halves["b"], keep)) if halves else None,
        "split_half_score": "-d(cross-entropy)/d(alpha) per half of the scoring set (row-centred)",
        "half_scores": {h: _round_rows(halves[h]) for h in HALVES} if halves else None,
    }


def _scored(rows: list[list[float | None]]) -> list[list[float]]:
    """Each row's scored entries (None: an op not scored, i.e. removed by shrinking before the scoring)."""
    return [[v for v in row if v is not None] for row in rows]


def _halves_split_half(rows: dict[str, list[list[float | None]]]) -> dict[str, Any] | None:
    """Split-half of the scored entries of halves "a" and "b"; None where a half has a non-finite score
    (a scoring set of one image has no second half: its losses are NaN)."""
    a, b = _scored(rows["a"]), _scored(rows["b"])
    return split_half(a, b) if all(math.isfinite(v) for row in a + b for v in row) else None


def scores_evidence(rows: dict[str, list[list[float | None]]]) -> dict[str, Any]:
    """Perturbation scores per edge (None: an op not scored), their decisiveness and split-half over the
    scored ops."""
    reliability = _halves_split_half(rows)
    return {
        "scores": _round_rows(rows["all"]),
        "miou_drop": _round_rows(rows["miou_drop"]),
        "decisiveness": decisiveness(_scored(rows["all"]), as_probs=False),
        "split_half": reliability,
        "half_scores": {h: _round_rows(rows[h]) for h in HALVES} if reliability is not None else None,
    }


def perturb_evidence(result: dict[str, Any], retune_steps: int) -> dict[str, Any]:
    """The `perturb` entry of the evidence: scores per edge (None: pruned by shrinking), their decisiveness
    and split-half."""
    return {
        "score": "increase of the mean cross-entropy when the op is removed (weight zeroed, rest renormalised)",
        **scores_evidence(result["rows"]),
        "retune_steps": retune_steps,
        "ops": list(result["ops"]),
    }


def shrink_record(step: dict[str, Any], epoch: int, seconds: float) -> dict[str, Any]:
    """One entry of the `shrink` evidence: the epoch, the op removed per edge, the scores (None: not scored)
    and their split-half over the ops scored."""
    rows = step["rows"]
    return {
        "epoch": int(epoch),
        "pruned": {f"edge {a}->{b}": op for e, (a, b) in enumerate(EDGES) if (op := step["pruned"].get(e))},
        "scores": _round_rows(rows["all"]),
        "split_half": _halves_split_half(rows),
        "seconds": round(float(seconds), 3),
    }


def shrink_evidence(opts: ShrinkOptions, split: str, steps: list[dict[str, Any]], keep: torch.Tensor | None) -> dict:
    """The `shrink` entry of the evidence: the options, every step (`shrink_record`) and the ops left per edge."""
    return {
        "every": opts.every,
        "batches": opts.batches,
        "min_ops": opts.min_ops,
        "split": split,
        "score": "increase of the mean cross-entropy when the op is removed; per edge the lowest is removed",
        "steps": list(steps),
        "kept": {f"edge {a}->{b}": [PRIMITIVES[j] for j in live_ops(keep, e)] for e, (a, b) in enumerate(EDGES)},
    }


def select_cell(net: nn.Module, cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """{"select", "ops", "evidence"}: the cell under `search.select` and its evidence (`net` is not modified).

    `datamodule` provides `scoring_dataloader(split)` (and the weight half for re-tuning); None
    (a bare fit on loaders) leaves the split-half out and refuses `perturb`.
    """
    select, split, steps = check_options(cfg.search)
    ignore = int(cfg.dataset.get("ignore_index", 255))
    scoring = Scoring.from_cfg(cfg, int(net.num_classes))
    null = scoring.null_seed is not None
    loader = datamodule.scoring_dataloader(split) if hasattr(datamodule, "scoring_dataloader") else None
    evidence: dict[str, Any] = {
        "select": select,
        "scoring": {"split": split, "images": len(loader.dataset) if loader is not None else 0, "null": null},
        "alpha": alpha_evidence(net, loader, scoring),
    }
    weights = net.arch_weights().tolist()
    ops = [PRIMITIVES[max(range(len(row)), key=row.__getitem__)] for row in weights]
    if select == "perturb":
        if loader is None:
            raise ConfigError("search.select=perturb needs the datamodule's scoring set; fit through stage=cell_search")
        retune = None
        if steps:
            weight_loader = datamodule.search_dataloaders()[0]
            retune = functools.partial(
                retune_weights, loader=weight_loader, s=cfg.search, steps=steps, ignore_index=ignore
            )
        result = perturb_select(copy.deepcopy(net), loader, scoring, retune)
        evidence["perturb"] = perturb_evidence(result, steps)
        ops = result["ops"]
    return {"select": select, "ops": ops, "evidence": evidence}
