"""Profiling and A/B tools behind the optimisation numbers in docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench import ab, profile_search


def test_profile_groups_ops_and_writes_a_section(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    on, off = profile_search.main(["--quick", "--write", str(doc)])
    for prof in (on, off):
        assert prof["kinds"]["conv forward"] > 0 and prof["kinds"]["conv backward"] > 0
        assert abs(sum(prof["kinds"].values()) - prof["total_ms"]) < 1e-6 * max(prof["total_ms"], 1.0)
    assert off["ops"]["aten::convolution_backward"][1] == on["ops"]["aten::convolution_backward"][1]  # same graph
    assert "bench:search_profile_tiny:start" in doc.read_text()


def test_kind_of_classifies_aten_ops() -> None:
    assert profile_search.kind_of("aten::convolution_backward") == "conv backward"
    assert profile_search.kind_of("aten::mkldnn_convolution") == "conv forward"
    assert profile_search.kind_of("aten::upsample_bilinear2d_backward") == "resize (bilinear)"
    assert profile_search.kind_of("aten::cat") == "copies, cat, slicing"


def test_ab_exports_a_revision_of_src(tmp_path: Path) -> None:
    src = ab.export_src("HEAD", tmp_path)
    assert (src / "rspnet" / "search_space" / "cell.py").is_file()


def test_ab_table_keeps_before_and_after_apart() -> None:
    res = {"case": {"before": [(2.0, 100.0), (4.0, 300.0)], "after": [(1.0, 50.0), (1.0, 50.0)]}}
    row = ab.table(res).splitlines()[-1]
    assert row == "| case | 3.000 | 1.000 | 0.33 | 200 | 50 | 0.25 |"


def test_profile_stage_sums_a_function_and_tables_the_rest() -> None:
    import cProfile
    import pstats

    from bench import profile_stage

    def work() -> int:
        return sum(range(10000))

    prof = cProfile.Profile()
    prof.runcall(lambda: [work() for _ in range(3)])
    seconds, calls = profile_stage.cumulative(pstats.Stats(prof), "test_bench_tools.py", "work")
    assert calls == 3 and seconds > 0
    res = {"wall_s": 10.0, "cpu_s": 9.0, "parts": {"a": (4.0, 1), "b": (1.0, 2)}}
    text = profile_stage.table(res)
    assert "| a | 1 | 4.00 | 40% |" in text and "5.00 | 50% |" in text  # the rest: 10 - 4 - 1
