"""`python -m bench.run_all`: the target check, and every benchmark's smallest config written to a doc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run_all


@pytest.mark.slow
def test_run_all_quick_writes_every_section_and_targets(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    out = run_all.main(["--doc", str(doc), "--quick"])
    assert not out["failed"], out["failed"]
    text = doc.read_text()
    for name in run_all.steps(doc, quick=True, cuda=False, camvid=None):
        assert f"<!-- bench:{name.replace('train_options', 'train_options_cpu')}:start -->" in text, name
    assert text.index("bench:run_all:start") < text.index("bench:derived_cost:start")  # header first
    assert "PC-DARTS K=4" in text and "HRNetV2-W48" in text and "load average" in text
    assert (tmp_path / "img" / "search_scaling.png").stat().st_size > 1000
    for name, goal, measured, verdict, _ in out["targets"]:  # every row's verdict follows from its numbers
        if measured == "-":
            assert verdict == "not run", name
            continue
        op, target = goal.split()
        met = float(measured) >= float(target) if op == ">=" else float(measured) <= float(target)
        # measured is rounded to 2 decimals: only a value within rounding of the target may go either way
        assert verdict == ("met" if met else "missed") or abs(float(measured) - float(target)) <= 0.005, name


def test_every_doc_section_has_a_step() -> None:
    steps = run_all.steps(Path("b.md"), quick=False, cuda=True, camvid=Path("camvid"))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text()
    sections = {line.split(":")[1] for line in doc.splitlines() if line.startswith("<!-- bench:") and ":start" in line}
    generated = {n.replace("train_options", "train_options_cpu") for n in steps} | {"run_all"}
    assert sections - generated <= {"optimisations_notes"}, sections - generated  # the notes are prose, by hand


def test_verdict_compares_in_the_target_direction() -> None:
    assert run_all.verdict(0.2, 0.3, higher_is_better=False) == "met"
    assert run_all.verdict(0.4, 0.3, higher_is_better=False) == "missed"
    assert run_all.verdict(2.0, 1.5, higher_is_better=True) == "met"
    assert run_all.verdict(1.0, 1.5, higher_is_better=True) == "missed"
    assert run_all.verdict(None, 1.5, higher_is_better=True) == "not run"
    rows = run_all.targets(
        {
            "derived_cost": [
                {"label": "HRNetV2-W48 + FCN head", "params_m": 10.0, "gpu_ips": 4.0},
                {"label": "RSPNet paper, RSP on", "params_m": 5.0, "gpu_ips": 8.0},
            ],
            "search_cost": {
                ("tiny", "RSP on"): {"step_s": 1.0, "memory_mib": 30.0},
                ("tiny", "RSP off"): {"step_s": 2.0, "memory_mib": 50.0},
            },
        }
    )
    assert [r[2:4] for r in rows] == [["0.50", "met"], ["0.60", "missed"], ["0.50", "missed"], ["2.00", "met"]]


def test_rsp_targets_at_small_are_issue_16s_goals() -> None:
    cost = {
        ("small", "RSP on"): {"step_s": 0.55, "memory_mib": 30.0},
        ("small", "RSP off"): {"step_s": 1.0, "memory_mib": 100.0},
    }
    rows = run_all.targets({"search_cost": cost})
    assert [r[1:4] for r in rows] == [["<= 0.5", "0.55", "missed"], ["<= 0.35", "0.30", "met"]]


def test_only_names_the_sections_it_did_not_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = []
    fake = {name: (lambda n=name: ran.append(n)) for name in ("alpha", "beta", "gamma")}
    monkeypatch.setattr(run_all, "steps", lambda *a: fake)
    doc = tmp_path / "benchmarks.md"
    out = run_all.main(["--doc", str(doc), "--only", "beta"])
    assert ran == ["beta"] and not out["failed"]
    header = doc.read_text().split("<!-- bench:run_all:end -->")[0]
    assert "Sections (re)written by this run: beta (" in header
    assert "Not rerun (`--only`; their sections keep their own date and command): alpha, gamma." in header
