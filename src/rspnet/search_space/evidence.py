"""The evidence behind a search's choice: decisiveness, split-half reliability, the null search.

A selection rule (argmax of alpha, top-k path scores, perturbation drops) turns one score per
candidate (an op of an edge, an input of a node) into a choice. Whether that choice carries
signal is measured, not assumed (SPEC 2.7, docs/design.md "Search evidence"):

* `decisiveness(scores)`: per row (edge / node) the normalised entropy of the scores read as a
  distribution (1 = undecided), the top-1 share and the margin top-1 minus top-2; for raw scores
  (perturbation drops) the margin and the margin relative to the row's range.
* `split_half(a, b)`: the same scores computed on two disjoint halves of the data they are
  measured on, rank-correlated (Spearman over every candidate, each row centred first so the
  correlation measures the order *within* rows, which is what a selection uses).
* Two null searches (`search.null`), each destroying the architecture signal another way:
  - `labels` (or `true`): `null_labels(y, ...)`, an i.i.d. uniform class per pixel (ignored pixels
    stay ignored) for the arch steps and the selection's scoring. No network can learn them, but
    their gradient is not noise: it pushes the architecture towards ops that flatten the output
    (measured on CamVid: the label null ends far MORE decided than a real search, mostly on
    skip_connect), so it is the reference for "does the choice follow the labels", not for
    decisiveness.
  - `grad`: `null_grads(...)`, the architecture gradients replaced by Gaussian noise of the same
    norm each step (the weights and the scoring see real labels): alpha/beta take the random walk
    the optimiser makes of pure noise, the reference for decisiveness statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rspnet.genotype import normalized_entropy

# rows with a single candidate decide nothing and are left out of means
Rows = Sequence[Sequence[float]]


def decisiveness(rows: Rows, as_probs: bool = True) -> dict[str, Any]:
    """Per row {entropy, top1, margin} (distributions) or {margin, margin_rel} (raw scores), and means over rows.

    `as_probs=True`: rows are distributions (softmax weights, path scores): entropy of the
    normalised row, top-1 share and margin top-1 minus top-2 in shares. `as_probs=False`: rows are
    raw scores of any sign and scale (e.g. perturbation drops), where an entropy or a share means
    nothing: the margin top-1 minus top-2 in score units and `margin_rel` = that margin over the
    row's range (1: the best stands alone, 0: a tie at the top). Rows with one candidate are left
    out of the means.
    """
    per_row = [_row_stats([float(v) for v in row], as_probs) for row in rows]
    counted = [r for r, row in zip(per_row, rows) if len(row) > 1]
    keys = per_row[0].keys() if per_row else ()
    mean = {k: round(sum(r[k] for r in counted) / len(counted), 6) if counted else None for k in keys}
    return {"per_row": per_row, "mean": mean}


def _row_stats(values: list[float], as_probs: bool) -> dict[str, float]:
    if as_probs:
        total = sum(max(v, 0.0) for v in values) or 1.0
        share = [max(v, 0.0) / total for v in values]
        ranked = sorted(share, reverse=True)
        margin = ranked[0] - ranked[1] if len(ranked) > 1 else 0.0
        return {
            "entropy": round(normalized_entropy(share), 6),
            "top1": round(max(share), 6),
            "margin": round(margin, 6),
        }
    ranked = sorted(values, reverse=True)
    margin = ranked[0] - ranked[1] if len(ranked) > 1 else 0.0
    spread = ranked[0] - ranked[-1]
    return {"margin": round(margin, 6), "margin_rel": round(margin / spread, 6) if spread > 0 else 0.0}


def _centred(rows: Rows) -> list[float]:
    out: list[float] = []
    for row in rows:
        if len(row) < 2:
            continue
        m = sum(float(v) for v in row) / len(row)
        out.extend(float(v) - m for v in row)
    return out


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation of two equally long sequences (ties: average ranks); None if undefined."""
    from scipy.stats import spearmanr

    if len(a) != len(b):
        raise ValueError(f"rank_correlation: {len(a)} vs {len(b)} values")
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    r = float(spearmanr(a, b).statistic)
    return round(r, 6) if math.isfinite(r) else None


def split_half(rows_a: Rows, rows_b: Rows) -> dict[str, Any]:
    """Reliability of a selection's scores: rank correlation of half A's and half B's row-centred scores,
    and the fraction of rows whose top candidate is the same on both halves."""
    if len(rows_a) != len(rows_b):
        raise ValueError(f"split_half: {len(rows_a)} vs {len(rows_b)} rows")
    multi = [(ra, rb) for ra, rb in zip(rows_a, rows_b) if len(ra) > 1]
    agree = [max(range(len(ra)), key=lambda k: ra[k]) == max(range(len(rb)), key=lambda k: rb[k]) for ra, rb in multi]
    return {
        "spearman": rank_correlation(_centred(rows_a), _centred(rows_b)),
        "top1_agreement": round(sum(agree) / len(agree), 6) if agree else None,
        "rows": len(multi),
    }


NULL_MODES = ("labels", "grad")


def null_mode(search_cfg: Any) -> str | None:
    """`search.null`: None (a real search), "labels" (`true` too) or "grad"."""
    value = search_cfg.get("null", False) if search_cfg is not None else False
    if value is None or value is False or str(value).lower() == "false":
        return None
    return "labels" if value is True or str(value).lower() == "true" else str(value)


def null_grads(params: Sequence[torch.Tensor], seed: int, step: int) -> None:
    """The grad null: replace each parameter's gradient by Gaussian noise of the same norm (in place).

    Keyed by (seed, step) like `null_labels`, so a null search is reproducible and resumable.
    """
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) + 7) % (2**63 - 1))
    for p in params:
        if p.grad is None:
            continue
        noise = torch.randn(tuple(p.grad.shape), generator=gen, dtype=torch.float64)
        scale = p.grad.detach().double().norm() / noise.norm().clamp_min(1e-300)
        p.grad = (noise * scale).to(device=p.grad.device, dtype=p.grad.dtype)


def null_labels(y: torch.Tensor, num_classes: int, ignore_index: int, seed: int, step: int) -> torch.Tensor:
    """Unlearnable labels for the null search: an i.i.d. uniform class per pixel, ignored pixels kept.

    Drawn from a generator keyed by (seed, step), so a null search is reproducible, survives a
    resume, and leaves the global RNG (the weight half's stream) exactly as the real search's.
    """
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
    noise = torch.randint(0, int(num_classes), tuple(y.shape), generator=gen).to(device=y.device, dtype=y.dtype)
    return torch.where(y == ignore_index, y, noise)
