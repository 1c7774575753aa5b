"""experiments.results on a hand-made study folder: arm summaries, the searched-vs-random verdict, the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.results import arm_rows, main, verdict


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """searched (2 seeds: 50, 52), 10 random arms (40..49), a baseline; train.json carries params/gflops."""
    out = tmp_path / "study"
    arms, jobs = [], []
    runs = {"searched_s0": [0.50, 0.52], "baseline_unet": [0.30]} | {
        f"random_r{i}": [0.40 + i / 100] for i in range(10)
    }
    for name, mious in runs.items():
        group = "searched" if name.startswith("searched") else "baseline" if name.startswith("baseline") else "random"
        arm = {"name": name, "group": group, "label": name, "runs": {}, "search_jobs": []}
        for t, miou in enumerate(mious):
            run = f"train/{name}_t{t}"
            metrics = out / run / ("metrics.json" if group == "baseline" else "eval/metrics.json")
            _write(metrics, {"miou": miou, "dataset": "camvid"})
            _write(out / run / "train.json", {"params": 1000, "gflops": 0.5})
            _write(out / run / "done", {"wall_s": 60.0, "cpu_s": 100.0})
            if group != "baseline":
                _write(out / run / "eval" / "done", {"wall_s": 6.0, "cpu_s": 10.0})
            arm["runs"][t] = run
        arms.append(arm)
    _write(out / "search/cell_s0/genotype.json", {"search": {"alpha_entropy": {"mean": 0.87}, "epochs": 15}})
    _write(out / "search/cell_s0/done", {"wall_s": 120.0, "cpu_s": 200.0})
    jobs.append({"name": "search/cell_s0", "kind": "rspnet", "deps": []})
    _write(
        out / "study.json",
        {"debug": False, "command": "python -m experiments.camvid_study", "epochs": {}, "jobs": jobs, "arms": arms},
    )
    return out


def test_arm_summaries_and_verdict(study: Path) -> None:
    plan = json.loads((study / "study.json").read_text())
    rows = {r["name"]: r for r in arm_rows(study, plan)}
    assert rows["searched_s0"]["mean"] == pytest.approx(0.51) and rows["searched_s0"]["std"] == pytest.approx(
        0.01414, abs=1e-4
    )
    assert rows["searched_s0"]["wall_s"] == pytest.approx(66.0) and rows["random_r3"]["cpu_s"] == pytest.approx(110.0)
    [v] = verdict(list(rows.values()))
    # random means 0.40..0.49: mean 0.445, 90th percentile 0.481; 0.51 beats all ten
    assert v["rank"] == 1 and v["of"] == 11 and v["diff"] == pytest.approx(0.065)
    assert v["p90"] == pytest.approx(0.4810) and v["goal_met"]


def test_page_has_the_table_verdict_entropies_and_pictures(study: Path, tmp_path: Path) -> None:
    page = tmp_path / "docs" / "results.md"
    assert main(["--study", str(study), "--out", str(page)]) == 0
    text = page.read_text()
    assert "| searched_s0 | searched | searched_s0 | 2 | 51.00 ± 1.41 | 0.001 | 0.500 | 1.1 | 1.8 |" in text
    assert "| searched_s0 | 51.00 | 1 of 11 | 44.50 | +6.50 | 48.10 | met |" in text
    assert "| search/cell_s0 | cell (alpha) | 0.870 |" in text and "PLACEHOLDER" not in text
    assert "camvid **val**" in text
    for pic in ("strip.png", "miou_vs_params.png"):
        assert (tmp_path / "docs" / "img" / "results" / pic).is_file() and f"img/results/{pic}" in text


def test_decide_section_shows_attempts_and_seed_agreement(tmp_path: Path) -> None:
    from experiments.results import decide_section

    assert decide_section(tmp_path) == []  # nothing run yet: no section
    (tmp_path / "decide").mkdir()
    (tmp_path / "decide" / "decide.md").write_text("| attempt |\n|---|\n| adam003 |\n")
    for s, ops in ((0, ["conv_3x3", "conv_5x5", "skip_connect"]), (1, ["conv_3x3", "dw_conv_3x3", "skip_connect"])):
        d = tmp_path / "search" / f"cell_s{s}"
        d.mkdir(parents=True)
        (d / "genotype.json").write_text(json.dumps({"edges": [{"op": o} for o in ops]}))
    text = "\n".join(decide_section(tmp_path))
    assert "| adam003 |" in text
    assert "agree on 67% of the edges" in text


def test_two_search_seeds_add_a_pooled_row_and_the_seed_noise_line(study: Path, tmp_path: Path) -> None:
    from experiments.results import seed_spread

    plan = json.loads((study / "study.json").read_text())
    rows = arm_rows(study, plan)
    second = dict(rows[0], name="searched_s1", mean=0.41, std=None)  # a worse search seed
    v = verdict([*rows, second])
    pooled = next(x for x in v if x["arm"].startswith("all search seeds"))
    assert pooled["miou"] == pytest.approx((0.51 + 0.41) / 2) and pooled["diff"] == pytest.approx(0.46 - 0.445)
    assert not pooled["goal_met"] and next(x for x in v if x["arm"] == "searched_s0")["goal_met"]
    assert seed_spread(rows) == pytest.approx(0.01414, abs=1e-4)  # only searched_s0 has 2 seeds
    page = tmp_path / "docs" / "results.md"
    assert main(["--study", str(study), "--out", str(page)]) == 0
    assert "Training-seed noise" in page.read_text() and "1.41 points" in page.read_text()


def test_a_study_of_hydra_phases_is_read_from_its_folders(tmp_path: Path) -> None:
    """conf/study's layout: arms = train/<arm>/t<seed>, scored by eval/<arm>/t<seed>, grouped by provenance."""
    from experiments.results import phase_plan

    study = tmp_path / "study"
    assert phase_plan(study) is None  # nothing trained yet: the page says so
    for arm, provenance, mious in (("macro/s0", "searched", [0.5, 0.6]), ("sample/r1000", "random", [0.4])):
        _write(study / arm / "genotype.json", {"provenance": provenance})
        for t, miou in enumerate(mious):
            (study / "train" / arm / f"t{t}").mkdir(parents=True)
            (study / "train" / arm / f"t{t}" / "config.yaml").write_text("seed: 0\n")
            _write(study / "train" / arm / f"t{t}" / "train.json", {"params": 180000})
            _write(study / "train" / arm / f"t{t}" / "done.json", {"wall_s": 60.0, "cpu_s": 100.0})
            _write(study / "eval" / arm / f"t{t}" / "metrics.json", {"miou": miou, "dataset": "camvid"})
            _write(study / "eval" / arm / f"t{t}" / "done.json", {"wall_s": 6.0, "cpu_s": 10.0})
    _write(study / "cell/s0/done.json", {"wall_s": 1.0, "cpu_s": 1.0})
    (study / "macro/s0/done.json").write_text(json.dumps({"wall_s": 1.0, "cpu_s": 1.0}))
    plan = phase_plan(study)
    assert [j["name"] for j in plan["jobs"]] == ["cell/s0", "macro/s0"]
    rows = {r["name"]: r for r in arm_rows(study, plan)}
    assert rows["macro/s0"]["group"] == "searched" and rows["macro/s0"]["mean"] == pytest.approx(0.55)
    assert rows["macro/s0"]["search_jobs"] == ["cell/s0", "macro/s0"] and rows["macro/s0"]["wall_s"] == 66.0
    assert rows["sample/r1000"]["group"] == "random" and rows["sample/r1000"]["params"] == 180000


def test_the_comparison_reads_architecture_means_and_states_its_verdict() -> None:
    from experiments.results import comparison_lines

    rows = [
        {"group": "searched", "mious": [0.40, 0.41]},
        {"group": "searched", "mious": [0.42]},
        {"group": "random", "mious": [0.30, 0.31]},
        {"group": "random", "mious": [0.32, 0.30]},
        {"group": "baseline", "mious": [0.50]},  # not in either group
    ]
    text = "\n".join(comparison_lines(rows))
    # architecture means: searched 40.5, 42 -> 41.25; random 30.5, 31 -> 30.75
    assert "| 2 / 3 | 2 / 4 | 41.25 | 30.75 | +10.50 [" in text and "**win:" in text
    assert comparison_lines(rows[1:]) == []  # one searched architecture: no comparison


def test_the_seed_noise_is_the_pooled_sd() -> None:
    from experiments.results import seed_spread

    rows = [{"mious": [0.1, 0.2, 0.3], "std": 0.1}, {"mious": [0.5, 0.6], "std": 0.07}, {"mious": [0.4], "std": None}]
    assert seed_spread(rows) == pytest.approx(((2 * 0.1**2 + 1 * 0.07**2) / 3) ** 0.5)
    assert seed_spread(rows[2:]) is None
