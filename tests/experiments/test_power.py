"""experiments.power: variance components from a results table, the detectable effect of a design."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.power import components, main, mde, parse_design, power_at, read_arms, se_of_difference
from tests.conftest import REPO

PAGE = """# results
| arm | group | what | seeds | val mIoU (%) | params (M) |
|---|---|---|---|---|---|
| searched_s0 | searched | s | 2 | 38.00 ± 2.00 | 0.1 |
| random_r0 | random | r | 2 | 36.00 ± 1.00 | 0.1 |
| random_r1 | random | r | 1 | 40.00 | 0.1 |
| random_r2 | random | r | 1 | 32.00 | 0.1 |
| baseline_unet | baseline | b | 3 | 42.00 ± 9.00 | 2.0 |
"""


def test_components_pool_seed_variance_and_subtract_it_from_the_arm_spread(tmp_path: Path) -> None:
    page = tmp_path / "results.md"
    page.write_text(PAGE)
    arms = read_arms(page)
    assert [a.name for a in arms] == ["searched_s0", "random_r0", "random_r1", "random_r2", "baseline_unet"]
    c = components(arms)
    assert c.seed_var == pytest.approx((4.0 + 1.0) / 2)  # pooled over the two 2-seed study arms, not the baseline
    between = (0.0 + 16.0 + 16.0) / 2  # variance of 36, 40, 32
    noise = (2.5 / 2 + 2.5 + 2.5) / 3
    assert c.arch_var == pytest.approx(between - noise) and c.seed_df == 2 and c.random_arms == 3


def test_detectable_effect_of_a_design() -> None:
    from experiments.power import Components

    c = Components(seed_var=4.0, arch_var=1.0, seed_df=6, random_arms=8)
    se = se_of_difference(c, 4, 2, 8, 1)
    assert se == pytest.approx(math.sqrt((1 + 2) / 4 + (1 + 4) / 8))
    assert mde(se) == pytest.approx((1.6448536 + 0.8416212) * se, rel=1e-6)
    assert power_at(se, mde(se)) == pytest.approx(0.8, abs=1e-6)
    assert power_at(se, 0.0) == pytest.approx(0.05, abs=1e-6)  # no effect: the test's level
    # more seeds and more architectures shrink the interval
    assert se_of_difference(c, 8, 4, 24, 2) < se


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--design 8x0,24x2"):
        parse_design("8x0,24x2")
    (tmp_path / "empty.md").write_text("# nothing\n")
    with pytest.raises(SystemExit, match="no arm table"):
        main([str(tmp_path / "empty.md")])
    with pytest.raises(SystemExit, match="cannot read"):
        main([str(tmp_path / "missing.md")])


def test_the_round_1_page_gives_its_documented_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(REPO / "docs/results_round1.md"), "--design", "8x4,24x2"]) == 0
    out = capsys.readouterr().out
    assert "training-seed SD 1.86 points (pooled, 6 df)" in out and "| 8x4, 24x2 | 80 |" in out
