"""bench.lut_check: the rank correlation it reports."""

from __future__ import annotations

import pytest

from bench.lut_check import spearman


@pytest.mark.parametrize(
    "a, b, rho",
    [
        ([1, 2, 3, 4], [10, 20, 30, 45], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        # ties share their average rank (scipy.stats.spearmanr gives the same value)
        ([1, 2, 2, 5, 3], [2, 1, 4, 3, 3], 0.36842105263157904),
    ],
)
def test_spearman_with_ties(a: list[float], b: list[float], rho: float) -> None:
    assert spearman(a, b) == pytest.approx(rho)
