"""experiments.results on a hand-made study folder: arm summaries, the searched-vs-random verdict, the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.results import PROTOCOL_ANCHOR, REPO, arm_rows, main, verdict


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


SHIPPED = Path(__file__).parents[2] / "experiments" / "genotypes"


def _cell(ops: list[str], null: str | None = None) -> dict:
    """The shipped CamVid cell with these ops (a complete artifact: the page draws the searched cell)."""
    doc = json.loads((SHIPPED / "camvid_tiny_s0.json").read_text())
    for edge, op in zip(doc["edges"], ops):
        edge["op"] = op
    doc["search"]["null"] = null or False
    return doc


def _macro(kept: list[list[int]] | None, null: str | None = None) -> dict:
    """The shipped CamVid trellis (kept None), or a made-up one keeping these input layers per node."""
    doc = json.loads((SHIPPED / "camvid_tiny_s0_macro.json").read_text())
    if kept is not None:
        doc["nodes"] = [{"inputs": [{"layer": k, "scale": 8, "score": 0.5} for k in node]} for node in kept]
    doc["search"]["null"] = null or False
    return doc


def _phase_study(root: Path, name: str, target: int, arms: dict[str, tuple[str, list[float], int, float]]) -> Path:
    """A study dir of conf/study's layout: arms name -> (provenance, seed mIoUs, params, latency ms)."""
    study = root / name
    for phase in ("sample", "train"):
        (study / phase).mkdir(parents=True, exist_ok=True)
        (study / phase / "multirun.yaml").write_text(f"study:\n  target_params: {target}\nstage:\n  name: {phase}\n")
    for arm, (prov, mious, params, latency) in arms.items():
        _write(study / arm / "genotype.json", _cell(["conv_3x3"] * 3) | {"provenance": prov})
        _write(study / "profile" / arm / "profile.json", {"params": params, "latency_ms": latency})
        for t, miou in enumerate(mious):
            (study / "train" / arm / f"t{t}").mkdir(parents=True)
            (study / "train" / arm / f"t{t}" / "config.yaml").write_text("seed: 0\n")
            _write(study / "train" / arm / f"t{t}" / "train.json", {"params": params})
            per_class = {"road": miou + 0.3, "sign": miou - 0.3}
            _write(
                study / "eval" / arm / f"t{t}" / "metrics.json",
                {"miou": miou, "dataset": "camvid", "iou_per_class": per_class},
            )
    return study


def test_round_two_page_has_gate_front_and_per_class_iou(tmp_path: Path) -> None:
    """The gate (real searches agree, null ones do not), the front over two targets, the per-class table."""
    arms = {f"macro/s{s}": ("searched", [0.50 + s / 100, 0.52 + s / 100], 180000, 10.0) for s in range(3)}
    arms |= {
        f"sample/r{1000 + i}": ("random", [0.40 + i / 100, 0.42 + i / 100], 170000 + 2000 * i, 9.0 + i / 10)
        for i in range(6)
    }
    study = _phase_study(tmp_path, "study2", 180000, arms)
    null = tmp_path / "study2_null"
    ops = ["conv_3x3", "conv_5x5", "dw_conv_3x3", "dil_conv_3x3", "skip_connect"]
    for s in range(4):  # real: the same cell and trellis every seed; null: a different op each seed
        _write(study / f"cell/s{s}/genotype.json", _cell(["conv_3x3", "conv_5x5", "conv_3x3"]))
        _write(study / f"macro/s{s}/macro.json", _macro(None))
        _write(null / f"cell/s{s}/genotype.json", _cell([ops[s], ops[(s + 1) % 5], ops[(s + 2) % 5]], "grad"))
        _write(null / f"macro/s{s}/macro.json", _macro([[s % 3, 3], [s, s + 1]], "grad"))
    # a second target: one searched net that beats none of its random neighbours
    low = _phase_study(
        tmp_path,
        "study2_t120000",
        120000,
        {"macro/s0": ("searched", [0.30], 120000, 7.0), "sample/r1000": ("random", [0.45], 121000, 7.1)},
    )
    page = tmp_path / "docs" / "results.md"
    assert main(["--study", str(study), "--front", str(low), "--out", str(page)]) == 0
    text = page.read_text()
    # the summary first: the primary endpoint, the gate, the front and the goal
    summary = text.split("## Summary")[1].split("## Searched vs random")[0]
    assert text.index("## Summary") < text.index("## Every arm") and "goal (≥ +1.0 and > p90)" not in text
    assert "searched 52.00 vs random 43.50 % (3 vs 6 architectures), difference **+8.50 points [95 % CI" in summary
    assert "**Gate passed**: cell agreement 1.000 vs null 0.000" in summary
    assert "**Front, by params**: 3 of 4 searched nets with random neighbours reach the 75% dominance goal" in summary
    assert "**Goal not met**; missed: every searched net >= 75% dominance by params." in summary
    assert f"README.md#{PROTOCOL_ANCHOR})" in summary
    gate = text.split("## Gate")[1].split("## Cost-accuracy front")[0]
    # real agreement 1.0 vs null: the cells' edges never agree between null seeds here (0.0)
    assert "| cell | 4 / 4 | 1.000 | 0.000 | +1.000 |" in gate and "**Gate passed**" in gate
    assert "#### cell: 4 real vs 4 null searches (search.null=grad)" in gate
    front = text.split("## Cost-accuracy front")[1].split("## Per-class IoU")[0]
    # study2's searched nets (mIoU 51-53) beat all random nets within +-10 % of 0.18M (41-46); the 0.12M one none
    assert "| study2 | macro/s0 | 0.180 | 10.0 | 51.00 | 100% (n = 6) |" in front
    assert "| study2_t120000 | macro/s0 | 0.120 | 7.0 | 30.00 | 0% (n = 1) |" in front
    assert "* by params: 3 of 4 searched nets with random neighbours reach the 75% dominance goal" in front
    assert (tmp_path / "docs" / "img" / "results" / "front.png").is_file()
    per_class = text.split("## Per-class IoU")[1]
    # best searched macro/s2 (seeds 0.52, 0.54): road 0.82 / 0.84 -> 83.0; best random r1005 (0.45, 0.47): 76.0
    assert "| road | 83.0 | 76.0 |" in per_class and "| sign | 23.0 | 16.0 |" in per_class


def test_the_gate_fails_when_real_searches_agree_no_more_than_null_ones(tmp_path: Path) -> None:
    from experiments.study_sections import gate_rows

    same = [{"choice": ["conv_3x3", "conv_5x5", "conv_3x3"]} for _ in range(4)]
    rows = gate_rows({"cell": same}, {"cell": [dict(x) for x in same]}, draws=500)
    assert rows[0]["gap"] == 0.0 and not rows[0]["passed"] and rows[0]["p"] > 0.5
    assert gate_rows({"cell": same[:1]}, {"cell": same}) == []  # one real search: no gate


def test_results_names_a_missing_null_or_front_folder(tmp_path: Path, capsys) -> None:
    study = _phase_study(tmp_path, "s", 1, {"sample/r1000": ("random", [0.4], 1, 1.0)})
    assert main(["--study", str(study), "--null", str(tmp_path / "nope"), "--out", str(tmp_path / "p.md")]) == 2
    assert "--null" in capsys.readouterr().err


def test_status_counts_each_phases_jobs_by_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import subprocess
    import sys

    study = tmp_path / "study"
    for job in ("cell/s0", "cell/s1", "cell/s2", "train/sample/r1000/t0"):
        _write(study / job / "config.yaml", "seed: 0\n")
        _write(study / job / ".hydra" / "config.yaml", "seed: 0\n")  # Hydra's copy: not a job
    _write(study / "cell/s0/done.json", {"wall_s": 1.0})
    _write(study / "cell/s1/checkpoints/last.ckpt", "x")
    hold = "import sys; from pathlib import Path; from rspnet.utils.run_record import hold\nwith hold(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(study / "train/sample/r1000/t0")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["--study", str(study), "--status"]) == 0
    finally:
        holder.communicate("")
    out = capsys.readouterr().out
    assert "| cell | 3 | 1 | 0 | 1 | 1 | – |" in out
    assert "| train | 1 | 0 | 1 | 0 | 0 | sample/r1000/t0 |" in out and "| eval | 0 | 0 | 0 | 0 | 0 | – |" in out


def test_the_protocol_link_names_a_heading_of_the_experiments_readme() -> None:
    """The summary links the protocol by its GitHub anchor: the heading must exist under that slug."""
    import re

    slugs = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (REPO / "experiments" / "README.md").read_text().splitlines()
        if line.startswith("#")
    }
    assert PROTOCOL_ANCHOR in slugs


def test_the_page_rebuilds_each_phases_command_from_its_jobs(tmp_path: Path) -> None:
    """Two sweeps into one phase folder (searched arms x 2 seeds, random arms x 1): multirun.yaml keeps only the
    last, the page lists what every job ran — shared overrides as $S, per phase the swept values and the count."""
    arms = {"macro/s0": ("searched", [0.5, 0.52], 1, 1.0), "macro/s1": ("searched", [0.5, 0.51], 1, 1.0)}
    arms |= {f"sample/r{1000 + i}": ("random", [0.4 + i / 100], 1, 1.0) for i in range(3)}

    def record_jobs(study: Path, arms: dict) -> None:
        common = ["experiment=camvid_study", f"study.dir=outputs/{study.name}"]
        for phase, jobs in {
            "train": [(a, t) for a, (_, m, _, _) in arms.items() for t in range(len(m))],
            "cell": [("s0", None), ("s1", None)],
        }.items():
            for arm, t in jobs:
                folder = study / phase / arm / (f"t{t}" if t is not None else "")
                swept = [f"study.arm={arm}", f"seed={t}"] if t is not None else [f"seed={arm[1:]}"]
                (folder / ".hydra").mkdir(parents=True, exist_ok=True)
                lines = [*swept, *common, f"study={phase}"]
                (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {a}\n" for a in lines))
                _write(folder / "done.json", {"cpu_s": 1800.0, "wall_s": 3600.0})
            (study / phase / "multirun.yaml").write_text(f"stage:\n  name: {phase}\n")

    study = _phase_study(tmp_path, "s2", 180000, arms)
    record_jobs(study, arms)
    low_arms = {"macro/s0": ("searched", [0.3], 120000, 1.0), "sample/r1000": ("random", [0.31], 121000, 1.0)}
    low = _phase_study(tmp_path, "s2_t120000", 120000, low_arms)
    record_jobs(low, low_arms)
    page = tmp_path / "docs" / "results.md"
    assert main(["--study", str(study), "--front", str(low), "--out", str(page)]) == 0
    front = page.read_text().split("## Cost-accuracy front")[1].split("## Per-class IoU")[0]
    # the further target's phases are on the page too, rebuilt from its own jobs
    assert '```bash\n# s2_t120000\nS="experiment=camvid_study study.dir=outputs/s2_t120000"\n' in front
    assert "rspnet -m $S study=train study.arm=macro/s0,sample/r1000 seed=0  # 2 jobs" in front
    block = page.read_text().split("```bash\n")[1].split("```")[0].splitlines()
    assert block[0] == 'S="experiment=camvid_study study.dir=outputs/s2"'
    assert "rspnet -m $S study=cell seed=0,1  # 2 jobs" in block
    arms_list = "macro/s0,macro/s1,sample/r1000,sample/r1001,sample/r1002"
    assert f"rspnet -m $S study=train study.arm={arms_list} seed=0,1  # 7 jobs of the 10 combinations" in block
    cost = page.read_text().split("## Cost\n")[1]
    assert "| s2 | cell | 2 | 1.00 | 2.00 |" in cost and "| s2 | train | 7 | 3.50 | 7.00 |" in cost
    assert "| s2_t120000 | train | 2 | 1.00 | 2.00 |" in cost
    assert "In all: 13 jobs, 6.5 CPU hours, 13.0 hours of job wall time" in cost
