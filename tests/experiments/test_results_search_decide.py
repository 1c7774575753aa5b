"""The search-recipe attempts (hparams_search=search_decide, a multirun of the study's cell search) and their
table in experiments.results: decisiveness statistics, seed agreement, one row per attempt; one real sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.results import agreement, attempt_of, decide_table, edge_stats, main
from rspnet.composition import compose
from rspnet.genotype import normalized_entropy


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
    assert s["ops"] == ["conv_3x3", "conv_3x3", "skip_connect"]
    # the mean normalised entropy of the weights (the uniform edge is 1)
    assert s["entropy"] == pytest.approx(sum(normalized_entropy(e["weights"]) for e in g["edges"]) / 3, abs=1e-6)
    assert s["entropy"] < 1 and edge_stats(_genotype([[0.2] * 5] * 3, ["conv_3x3"] * 3, 0.0))["entropy"] == 1.0


def test_agreement_counts_equal_edges_over_seed_pairs() -> None:
    a, b, c = ["x", "y", "z"], ["x", "y", "w"], ["q", "y", "w"]
    assert agreement([a, a]) == 1.0
    assert agreement([a, b]) == pytest.approx(2 / 3)
    assert agreement([a, b, c]) == pytest.approx((2 / 3 + 1 / 3 + 2 / 3) / 3)


def test_the_sweep_is_attempts_times_seeds_of_the_studys_cell_search() -> None:
    cfg = compose("experiment=camvid_study", "hparams_search=search_decide", hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN" and cfg.stage.name == "cell_search"
    assert cfg.trainer.max_epochs == 15 and cfg.dataset.crop_size == [120, 160]  # the study's budget and data
    assert dict(cfg.hydra.sweeper.params) == {
        "seed": "0,1",
        "search.arch_adam_lr": "0.01,0.03,0.1",
        "search.warmup_epochs": "0,5",
    }
    assert "seed" not in cfg.hydra.job.config.override_dirname.exclude_keys  # one folder per (attempt, seed)


def test_a_job_folder_belongs_to_its_attempt() -> None:
    assert attempt_of("search.arch_adam_lr=0.03,search.warmup_epochs=5,seed=1") == (
        "search.arch_adam_lr=0.03,search.warmup_epochs=5"
    )
    assert attempt_of("seed=0,search.arch_adam_lr=0.1") == "search.arch_adam_lr=0.1"
    assert attempt_of("seed=0") == "(base)"
    assert attempt_of("cell_adam003_wu5_s1") == "adam003_wu5"  # the older runner's folders


def test_table_one_row_per_attempt(tmp_path: Path) -> None:
    for s, ops in ((0, ["conv_3x3", "conv_5x5", "skip_connect"]), (1, ["conv_3x3", "dw_conv_3x3", "skip_connect"])):
        d = tmp_path / f"search.arch_adam_lr=0.1,seed={s}"
        d.mkdir()
        (d / "genotype.json").write_text(json.dumps(_genotype([[0.3, 0.25, 0.15, 0.15, 0.15]] * 3, ops, 0.95)))
        (d / "done.json").write_text(json.dumps({"wall_s": 120.0, "cpu_s": 60.0}))
    (tmp_path / "search.arch_adam_lr=0.01,seed=0").mkdir()  # unfinished: not in the table
    row = decide_table(tmp_path).splitlines()[2]
    # entropy: the normalised entropy of (0.3, 0.25, 0.15, 0.15, 0.15) = 0.970
    assert row.startswith("| `search.arch_adam_lr=0.1` | 2 | 0.970 | 0.300 | 0.050 | 0.67 |")
    assert row.endswith("| 2.0 / 1.0 |") and len(decide_table(tmp_path).splitlines()) == 3


@pytest.mark.slow  # two cell searches in a subprocess: ~45 s on a busy 2-core box
def test_a_real_sweep_through_the_cli_is_tabled(rspnet_cli, tmp_path: Path) -> None:
    """One attempt x two seeds of the documented sweep on synthetic data (seconds a job)."""
    sweep = tmp_path / "decide"
    proc = rspnet_cli(
        "experiment=camvid_study",
        "hparams_search=search_decide",
        "debug=tiny",
        "dataset.resize_long=null",
        "search.arch_adam_lr=0.03",
        "search.warmup_epochs=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        f"paths.output_dir={sweep}",
        "ckpt_path=last",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "done.json").is_file())
    assert len(jobs) == 2 and {attempt_of(j) for j in jobs} == {
        "dataset.resize_long=null,search.arch_adam_lr=0.03,search.warmup_epochs=0,trainer.limit_train_batches=1"
    }
    table = tmp_path / "decide.md"
    assert main(["--decide", str(sweep), "--out", str(table)]) == 0
    assert "| 2 |" in table.read_text().splitlines()[2]
