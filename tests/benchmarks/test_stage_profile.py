"""bench/profile_search.py --stages: the demo's macro-search step profiled beside the cell-search step."""

from __future__ import annotations

from pathlib import Path

from bench import profile_search


def test_stages_profiles_macro_and_cell_steps(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    macro, cell = profile_search.main(["--stages", "--quick", "--write", str(doc)])
    # different nets: stage 2 has PAM/alignments, stage 1 mixed ops on every edge
    assert macro["calls"] != cell["calls"]
    assert macro["kinds"]["conv forward"] > 0 and cell["kinds"]["conv forward"] > 0
    text = doc.read_text()
    assert "bench:search_profile_stages:start" in text
    assert "| kind | macro (ms/step) | cell (ms/step) | macro / cell |" in text
