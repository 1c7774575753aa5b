"""`python -m bench.run_all --quick`: every own benchmark's smallest config, written to a doc."""

from __future__ import annotations

from pathlib import Path

from bench import run_all


def test_run_all_quick_writes_every_section_and_targets(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    out = run_all.main(["--doc", str(doc), "--quick"])
    assert not out["failed"], out["failed"]
    text = doc.read_text()
    for name in ("run_all", "search_cost_peers_tiny", "derived_cost", "data_throughput", "search_scaling"):
        assert f"<!-- bench:{name}:start -->" in text, name
    assert text.index("bench:run_all:start") < text.index("bench:derived_cost:start")  # header first
    assert "PC-DARTS K=4" in text and "HRNetV2-W48" in text and "load average" in text
    assert (tmp_path / "img" / "search_scaling.png").stat().st_size > 1000
    verdicts = {row[0]: row[3] for row in out["targets"]}
    derived = {r["label"]: r for r in out["results"]["derived_cost"]}
    ratio = derived["RSPNet paper, RSP on"]["params_m"] / derived["HRNetV2-W48 + FCN head"]["params_m"]
    assert verdicts["RSP paper net params / HRNetV2-W48"] == ("met" if ratio <= 0.3 else "missed")
    for name, goal, measured, verdict, _ in out["targets"]:  # every row's verdict follows from its numbers
        _check_row(name, goal, measured, verdict)
    if "cuda" not in text.lower():
        assert verdicts["RSP paper net GPU images/s / HRNetV2-W48"] == "not run"


def _check_row(name: str, goal: str, measured: str, verdict: str) -> None:
    """The verdict a row shows is the one its goal and measured value imply."""
    if measured == "-":
        assert verdict == "not run", name
        return
    op, target = goal.split()
    value = float(measured)
    met = value >= float(target) if op == ">=" else value <= float(target)
    # measured is rounded to 2 decimals: only a value within rounding of the target may go either way
    assert verdict == ("met" if met else "missed") or abs(value - float(target)) <= 0.005, (name, goal, measured, verdict)


def test_verdict_compares_in_the_target_direction() -> None:
    assert run_all.verdict(0.2, 0.3, higher_is_better=False) == "met"
    assert run_all.verdict(0.4, 0.3, higher_is_better=False) == "missed"
    assert run_all.verdict(2.0, 1.5, higher_is_better=True) == "met"
    assert run_all.verdict(1.0, 1.5, higher_is_better=True) == "missed"
    assert run_all.verdict(None, 1.5, higher_is_better=True) == "not run"
    rows = run_all.targets({"derived_cost": [{"label": "HRNetV2-W48 + FCN head", "params_m": 10.0, "gpu_ips": 4.0},
                                             {"label": "RSPNet paper, RSP on", "params_m": 5.0, "gpu_ips": 8.0}]})
    assert [r[2:4] for r in rows] == [["0.50", "missed"], ["2.00", "met"]]
