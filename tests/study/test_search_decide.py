"""experiments.search_decide: decisiveness statistics, seed agreement, the attempts table, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.search_decide import agreement, edge_stats, main, parse_args, plan, table


def _genotype(weights: list[list[float]], ops: list[str], entropy: float) -> dict:
    edges = [
        {"src": s, "dst": d, "op": op, "weights": w} for (s, d), op, w in zip([(0, 1), (0, 2), (1, 2)], ops, weights)
    ]
    return {"edges": edges, "search": {"alpha_entropy": {"mean": entropy}}}


def test_edge_stats_top1_and_margin() -> None:
    g = _genotype(
        [[0.4, 0.3, 0.1, 0.1, 0.1], [0.2] * 5, [0.1, 0.1, 0.1, 0.1, 0.6]], ["conv_3x3", "conv_3x3", "skip_connect"], 0.9
    )
    s = edge_stats(g)
    assert s["top1"] == pytest.approx((0.4 + 0.2 + 0.6) / 3)
    assert s["margin"] == pytest.approx((0.1 + 0.0 + 0.5) / 3)
    assert s["ops"] == ["conv_3x3", "conv_3x3", "skip_connect"] and s["entropy"] == 0.9


def test_agreement_counts_equal_edges_over_seed_pairs() -> None:
    a, b, c = ["x", "y", "z"], ["x", "y", "w"], ["q", "y", "w"]
    assert agreement([a, a]) == 1.0
    assert agreement([a, b]) == pytest.approx(2 / 3)
    assert agreement([a, b, c]) == pytest.approx((2 / 3 + 1 / 3 + 2 / 3) / 3)


def test_plan_and_table_one_row_per_attempt(tmp_path: Path) -> None:
    args = parse_args(
        [
            "--out",
            str(tmp_path),
            "--root",
            str(tmp_path),
            "--attempt",
            "fast=search.arch_adam_lr=0.1",
            "--seeds",
            "0",
            "1",
            "--epochs",
            "7",
        ]
    )
    jobs = plan(args)
    assert [j.name for j in jobs] == ["cell_fast_s0", "cell_fast_s1"]
    argv = jobs[1].args(tmp_path)
    assert {
        "experiment=camvid_study",
        "stage=cell_search",
        "seed=1",
        "trainer.max_epochs=7",
        "search.arch_adam_lr=0.1",
    } <= set(argv)
    for s, ops in ((0, ["conv_3x3", "conv_5x5", "skip_connect"]), (1, ["conv_3x3", "dw_conv_3x3", "skip_connect"])):
        d = tmp_path / f"cell_fast_s{s}"
        d.mkdir()
        (d / "genotype.json").write_text(json.dumps(_genotype([[0.3, 0.25, 0.15, 0.15, 0.15]] * 3, ops, 0.95)))
        (d / "done").write_text(json.dumps({"wall_s": 120.0, "cpu_s": 60.0}))
    text = table(tmp_path, jobs)
    row = text.splitlines()[2]
    assert row.startswith("| fast | `search.arch_adam_lr=0.1` | 2 | 0.950 | 0.300 | 0.050 | 0.67 |")
    assert row.endswith("| 2.0 / 1.0 |")


def test_bad_attempt_and_root_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit, match="--attempt nonsense"):
        plan(parse_args(["--out", str(tmp_path), "--attempt", "nonsense"]))
    assert main(["--out", str(tmp_path), "--root", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
