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
    assert verdicts["RSP paper net params / HRNetV2-W48"] in ("met", "missed")
    if "cuda" not in text.lower():
        assert verdicts["RSP paper net GPU images/s / HRNetV2-W48"] == "not run"
