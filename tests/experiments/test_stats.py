"""experiments.stats: the round-2 study's comparison, dominance and hypervolume."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats import arch_means, compare, dominance, hypervolume, two_level_bootstrap, verdict


def _arms(rng: np.random.Generator, n: int, seeds: int, mean: float, arch_sd: float = 0.5, seed_sd: float = 1.9):
    return [list(rng.normal(rng.normal(mean, arch_sd), seed_sd, seeds)) for _ in range(n)]


def test_a_large_true_difference_is_a_win_and_no_difference_is_a_null_result() -> None:
    rng = np.random.default_rng(0)
    win = compare(_arms(rng, 8, 4, 40.0), _arms(rng, 24, 3, 36.0), draws=2000)
    assert win.difference == pytest.approx(4.0, abs=1.5) and win.ci_low > 0 and win.verdict.startswith("win")
    assert win.welch_p < 0.01 and win.permutation_p < 0.01
    assert win.relative_improvement == pytest.approx(100 * win.difference / win.random_mean)
    same = compare(_arms(rng, 8, 4, 36.0), _arms(rng, 24, 3, 36.0), draws=2000)
    assert same.ci_low < 0 < same.ci_high and same.verdict.startswith("null result")
    assert same.welch_p > 0.05 and same.permutation_p > 0.05


def test_the_interval_covers_seed_and_architecture_noise() -> None:
    # searched = random in truth, round 1's variance components, the protocol's design (8x4 vs 24x3): the
    # two-level interval contains 0 in >= 95 % of simulated studies (measured 99 %: conservative; resampling
    # the architectures alone covers 92 %, the seeds alone far less)
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        low, high = two_level_bootstrap(_arms(rng, 8, 4, 36.0), _arms(rng, 24, 3, 36.0), draws=500, seed=2)
        covered += low <= 0 <= high
    assert covered >= 190


def test_ragged_seeds_are_resampled_within_their_architecture() -> None:
    # every architecture's seeds are equal: seed resampling changes nothing, the interval is the architectures'
    searched, random = [[40.0, 40.0], [42.0], [41.0, 41.0, 41.0]], [[36.0, 36.0], [37.0]]
    low, high = two_level_bootstrap(searched, random, draws=4000)
    assert 3.0 <= low <= high <= 6.0  # differences of arch-resampled means: from 40 - 37 to 42 - 36


def test_architecture_means_weigh_architectures_not_seeds() -> None:
    assert list(arch_means([[1.0, 3.0], [10.0]])) == [2.0, 10.0]
    with pytest.raises(ValueError, match="without a finished seed"):
        arch_means([[1.0], []])
    with pytest.raises(ValueError, match=">= 2 architectures"):
        compare([[1.0]], [[1.0], [2.0]])


def test_verdicts() -> None:
    assert verdict(1.2, 0.1, 2.0).startswith("win")
    assert verdict(0.6, 0.1, 1.1).startswith("searched ahead")
    assert verdict(-2.0, -3.0, -0.5).startswith("loss")
    assert verdict(0.3, -0.4, 1.0).startswith("null result")


def test_dominance_counts_random_nets_near_in_cost() -> None:
    frac, n = dominance(100.0, 40.0, [95.0, 105.0, 109.0, 150.0], [39.0, 40.0, 41.0, 10.0])
    assert n == 3 and frac == pytest.approx(2 / 3)  # beats 39, ties 40, loses to 41; 150 is out of the band
    assert dominance(100.0, 40.0, [200.0], [1.0]) == (None, 0)


def test_hypervolume_is_the_area_of_the_staircase() -> None:
    # A (1, 5) and B (2, 8) up to (4, 0): [1,2]x[0,5] + [2,4]x[0,8] = 5 + 16
    assert hypervolume([(1.0, 5.0), (2.0, 8.0)], (4.0, 0.0)) == pytest.approx(21.0)
    assert hypervolume([(2.0, 8.0), (3.0, 6.0)], (4.0, 0.0)) == pytest.approx(16.0)  # a dominated point adds nothing
    assert hypervolume([(5.0, 9.0)], (4.0, 0.0)) == 0.0  # beyond the reference cost
    assert hypervolume([], (4.0, 0.0)) == 0.0
