"""The statistics of the searched-vs-random study (issue 26; protocol in experiments/README.md, round 2).

Input: per architecture the val mIoU of each of its training seeds, in two groups (searched, random).
The endpoint is the difference of architecture-level means (each architecture's mean over its seeds):

* `compare(searched, random)`: the difference, a 95 % interval from a two-level bootstrap
  (architectures resampled within each group, then seeds within each architecture), a one-sided
  Welch t-test on the architecture means (scipy), a permutation test of the group labels over
  architectures (scipy), Yang et al.'s relative improvement over the random average, and the verdict
  the protocol fixes (win / null result / loss).
* `pooled_variance(groups)`: the training-seed variance pooled over arms (by degrees of freedom).
* `dominance(cost, miou, random_cost, random_miou)`: the fraction of random nets within +-10 % of a
  searched net's cost whose mIoU it equals or beats.
* `hypervolume(points, reference)`: the area a front dominates (cost lower, mIoU higher) up to a
  reference point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

Arms = Sequence[Sequence[float]]  # per architecture, its seeds' mIoU


@dataclass(frozen=True)
class Comparison:
    searched_mean: float
    random_mean: float
    difference: float
    ci_low: float
    ci_high: float
    welch_p: float
    permutation_p: float
    relative_improvement: float  # percent of the random mean
    searched_archs: int
    random_archs: int
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pooled_variance(groups: Sequence[tuple[int, float]]) -> tuple[float, int] | None:
    """(pooled within-group variance, its degrees of freedom) of groups given as (size, SD), each weighted by
    its degrees of freedom (size - 1; groups of one add nothing); None without a group of two or more. The
    mean of the SDs would be biased low."""
    df = sum(n - 1 for n, _ in groups if n > 1)
    if df == 0:
        return None
    return sum((n - 1) * sd**2 for n, sd in groups if n > 1) / df, df


def arch_means(arms: Arms) -> np.ndarray:
    """Each architecture's mean over its seeds (an architecture without seeds is an error)."""
    if any(len(a) == 0 for a in arms):
        raise ValueError("an architecture without a finished seed: leave it out or finish its runs")
    return np.array([float(np.mean(a)) for a in arms])


def two_level_bootstrap(
    searched: Arms, random: Arms, draws: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the difference of group means, resampling architectures then seeds.

    Conservative: resampling both levels counts the seed noise twice (it is already in the architectures'
    spread). Simulated at round 1's variance components and the protocol's design it covers 99 % for a
    nominal 95 % (resampling the architectures alone: 92 %); a false win is the error this study guards against.
    """
    rng = np.random.default_rng(seed)

    def resampled_means(arms: Arms) -> np.ndarray:
        # ragged seeds: a NaN-padded [archs, max seeds] table, each draw's seed picks scaled to its arch's count
        counts = np.array([len(a) for a in arms])
        table = np.full((len(arms), counts.max()), np.nan)
        for i, a in enumerate(arms):
            table[i, : len(a)] = a
        picks = rng.integers(0, len(arms), (draws, len(arms)))
        k = counts[picks][..., None]
        slots = np.arange(counts.max())
        seeds = np.minimum((rng.random((draws, len(arms), counts.max())) * k).astype(int), k - 1)
        values = np.where(slots < k, table[picks[..., None], seeds], 0.0)
        return (values.sum(-1) / k[..., 0]).mean(-1)

    diff = resampled_means(searched) - resampled_means(random)
    tail = (1 - level) / 2
    return float(np.quantile(diff, tail)), float(np.quantile(diff, 1 - tail))


def verdict(difference: float, low: float, high: float, goal: float = 1.0) -> str:
    """The protocol's reading: win (>= goal and the interval above 0), null result, loss, or a positive
    difference below the goal."""
    if high < 0:
        return "loss: random beats searched (the interval is below 0)"
    if low <= 0:
        return "null result: no detectable difference (the interval contains 0)"
    if difference >= goal:
        return f"win: searched beats random by >= {goal:g} points with the interval above 0"
    return f"searched ahead (interval above 0) but by less than the goal of {goal:g} points"


def compare(searched: Arms, random: Arms, draws: int = 10_000, seed: int = 0, goal: float = 1.0) -> Comparison:
    """Searched vs random on architecture-level means (see the module doc)."""
    s, r = arch_means(searched), arch_means(random)
    if len(s) < 2 or len(r) < 2:
        raise ValueError(f"need >= 2 architectures per group (searched {len(s)}, random {len(r)})")
    diff = float(s.mean() - r.mean())
    low, high = two_level_bootstrap(searched, random, draws, seed)
    welch = stats.ttest_ind(s, r, equal_var=False, alternative="greater")
    perm = stats.permutation_test(
        (s, r),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent",
        alternative="greater",
        n_resamples=draws,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return Comparison(
        searched_mean=float(s.mean()),
        random_mean=float(r.mean()),
        difference=diff,
        ci_low=low,
        ci_high=high,
        welch_p=float(welch.pvalue),
        permutation_p=float(perm.pvalue),
        relative_improvement=100.0 * diff / float(r.mean()),
        searched_archs=len(s),
        random_archs=len(r),
        verdict=verdict(diff, low, high, goal),
    )


def dominance(cost: float, miou: float, random_cost: Sequence[float], random_miou: Sequence[float], band: float = 0.1):
    """(fraction of random nets within +-band of `cost` whose mIoU this net equals or beats, how many there are);
    the fraction is None when no random net is that close in cost."""
    near = [m for c, m in zip(random_cost, random_miou) if abs(c - cost) <= band * cost]
    return (sum(miou >= m for m in near) / len(near) if near else None), len(near)


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by `points` (cost, mIoU) — lower cost and higher mIoU are better — up to `reference`
    (cost_ref, miou_ref): the union of the rectangles [cost, cost_ref] x [miou_ref, mIoU]."""
    cost_ref, miou_ref = reference
    inside = sorted((c, m) for c, m in points if c < cost_ref and m > miou_ref)
    area, best = 0.0, miou_ref
    # a staircase in order of cost: between one point's cost and the next, the best mIoU reached so far
    for (c, m), nxt in zip(inside, [c for c, _ in inside[1:]] + [cost_ref]):
        best = max(best, m)
        area += (nxt - c) * (best - miou_ref)
    return area


def swap_test(
    real: Sequence[Any], null: Sequence[Any], statistic: Any, draws: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """(statistic(real) - statistic(null), one-sided p of a difference this large when whole items are swapped
    between the groups at random): a permutation test for a statistic of a group that is not a mean of
    independent values, e.g. the mean pairwise agreement of searches (its seed pairs share searches)."""
    items = [*real, *null]
    n = len(real)
    if n < 2 or len(items) - n < 2:
        raise ValueError(f"need >= 2 items per group (real {n}, null {len(items) - n})")

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return statistic([items[int(i)] for i in a]) - statistic([items[int(i)] for i in b])

    result = stats.permutation_test(
        (np.arange(n), np.arange(n, len(items))),
        gap,
        permutation_type="independent",
        alternative="greater",
        n_resamples=draws,
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    return float(result.statistic), float(result.pvalue)
