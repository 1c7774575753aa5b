"""bench.common: the doc sections, per-config subprocesses, timing, memory and device facts."""

from __future__ import annotations

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
