"""bench.common: the doc sections, per-config subprocesses, timing, memory and device facts."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bench import common


def test_write_section_appends_then_replaces(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    common.write_section(doc, "a", "first")
    common.write_section(doc, "b", "other")
    common.write_section(doc, "a", "second")
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "second" in text and "first" not in text and "other" in text
    assert text.index("bench:a:start") < text.index("bench:b:start")  # replaced in place, not moved


def test_time_calls_gives_wall_and_cpu_per_call() -> None:
    calls = []
    times = common.time_calls(lambda: (calls.append(1), time.sleep(0.02)), steps=2, warmup=1)
    assert len(calls) == 3 and len(times) == 2
    assert all(wall >= 0.02 and 0 <= cpu < wall for wall, cpu in times)  # sleeping costs wall time, not CPU


def test_peak_memory_sees_an_allocation() -> None:
    with common.PeakMemory("cpu") as mem:
        x = torch.ones(64, 2**20 // 4)  # 64 MiB, touched
        del x
    assert mem.mib > 40


def test_device_info_names_cpu_and_torch() -> None:
    info = common.device_info()
    assert info["cpu"] and info["cores"] >= 1 and info["torch"] == torch.__version__
    assert "torch" in common.device_line(info) and "load average" in common.device_line(info)


def test_run_worker_reports_a_failed_worker() -> None:
    # bench.common has no worker entry point: the subprocess prints no JSON line
    with pytest.raises(RuntimeError, match="worker"):
        common.run_worker("bench.common", {"x": 1})


def test_recorded_commands_show_repo_paths_relative() -> None:
    """`make bench` passes absolute --write/--plot paths; the doc must not record a machine path."""
    doc, png = common.REPO / "docs" / "benchmarks.md", common.REPO / "docs" / "img" / "x.png"
    line = common.command_line("bench.search", ["--plot", str(png), "--write", str(doc), f"dataset.root={doc.parent}"])
    assert line == "python -m bench.search --plot docs/img/x.png --write docs/benchmarks.md dataset.root=docs"
    assert common.command_line("bench.x", ["--root", "../shared/data/camvid"]).endswith("--root ../shared/data/camvid")


def test_tracked_text_files_hold_no_machine_paths() -> None:
    """Docs, code and recorded commands name repo-relative paths and arguments, never this machine's folders."""
    files = subprocess.run(["git", "ls-files"], cwd=common.REPO, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    pattern = re.compile(r"(^|[^\w.~-])/(work|tmp|home|Users)/")
    hits = []
    for name in files:
        path = common.REPO / name
        if path.suffix in {".png", ".ckpt", ".pt", ".onnx", ".jpg"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not hits, f"machine paths in: {', '.join(hits[:10])}"
