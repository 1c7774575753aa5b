"""bench.runs: the busy neighbour, the alternated arms, the wall-first tables of demo epochs and `make demo`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from bench import runs


def test_busy_loop_runs_pinned_and_is_stopped() -> None:
    with runs.busy_loop(pin=0) as proc:
        assert proc.poll() is None
        assert os.sched_getaffinity(proc.pid) == {0}
    assert proc.poll() is not None


def test_arms_alternate_and_table_is_wall_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, bool]] = []
    state = {"busy": False}
    real_loop = runs.busy_loop

    def loop(pin: int | None = None) -> Any:
        state["busy"] = True
        try:
            with real_loop(pin) as proc:
                yield proc
        finally:
            state["busy"] = False

    def fake_worker(module: str, spec: dict[str, Any], inprocess: bool = False) -> dict[str, Any]:
        workload = spec["overrides"][0].split("=")[1]
        calls.append((workload, state["busy"]))
        return {"wall_s": 4.0 if state["busy"] else 2.0, "cpu_s": 1.5, "threads": 1}

    monkeypatch.setattr(runs, "busy_loop", contextlib.contextmanager(loop))
    monkeypatch.setattr(runs.common, "run_worker", fake_worker)
    doc = tmp_path / "b.md"
    res = runs.main(["--epochs", "--reps", "2", "--write", str(doc), "threads.intra_op=1"])
    assert calls == [
        ("macro_search", False),
        ("macro_search", True),
        ("train", False),
        ("train", True),
        ("macro_search", True),
        ("macro_search", False),
        ("train", True),
        ("train", False),
    ]
    assert all(len(arms["idle"]) == len(arms["busy"]) == 2 for arms in res.values())
    text = doc.read_text()
    assert "bench:busy_threads.intra_op=1:start" in text and "python -m bench.runs --epochs --reps 2" in text
    assert "a fresh process with the overrides `threads.intra_op=1`" in text  # not "the default thread policy"
    header = next(line for line in text.splitlines() if line.startswith("| workload"))
    assert header.split("|")[2].strip().startswith("wall idle")  # wall time is the first number
    assert "| macro_search (1 epoch) | 2.0 | 4.0 | **2.00x** | 1.5 | 1.5 | 1 |" in text


@pytest.mark.slow
def test_quick_run_times_both_stages_in_both_arms() -> None:
    res = runs.main(["--epochs", "--quick", "--reps", "1"])
    for arms in res.values():
        assert all(run["wall_s"] > 0 and run["cpu_s"] > 0 for arm in arms.values() for run in arm)
        assert len(arms["idle"]) == len(arms["busy"]) == 1


def test_demo_run_busy_reports_both_arms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[bool] = []
    state = {"busy": False}

    @contextlib.contextmanager
    def loop(pin: int | None = None) -> Any:
        state["busy"] = True
        yield None
        state["busy"] = False

    def fake_demo(overrides: list[str]) -> tuple[dict[str, Any], float]:
        seen.append(state["busy"])
        scale = 2.0 if state["busy"] else 1.0
        return {
            "seconds": {"cell_search": 10.0 * scale, "train": 20.0 * scale},
            "miou": 0.4,
            "params": 1e5,
        }, 35.0 * scale

    monkeypatch.setattr(runs, "run_demo", fake_demo)
    monkeypatch.setattr(runs, "busy_loop", loop)
    doc = tmp_path / "b.md"
    assert "busy / idle" in runs.main(["--demo", "--busy", "--write", str(doc), "stage.train_epochs=1"])
    assert seen == [False, True]  # idle arm, then the arm beside a live busy loop
    text = doc.read_text()
    assert "bench:demo_busy:start" in text and "python -m bench.runs --demo --busy --write" in text
    assert (
        "| cell_search | 10.0 | 20.0 | 2.00x |" in text
        and "| total (process wall time) | 35.0 | 70.0 | **2.00x** |" in text
    )


def test_run_all_reports_the_issue_16_targets() -> None:
    from bench import run_all

    arms = {"idle": [{"wall_s": 10.0}, {"wall_s": 12.0}], "busy": [{"wall_s": 30.0}, {"wall_s": 20.0}]}
    rows = run_all.targets(
        {"busy": {"macro_search": arms}, "search_profile_stages": ({"total_ms": 60.0}, {"total_ms": 100.0})}
    )
    by_name = {r[0]: r for r in rows}
    assert by_name["demo macro_search epoch wall: beside a busy core / idle"][2:4] == ["2.27", "missed"]  # 25 / 11
    assert by_name["demo macro-search step / cell-search step (CPU)"][2:4] == ["0.60", "met"]
