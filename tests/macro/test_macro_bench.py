"""bench/macro_cost.py: one configuration measured in-process (the grid runs the same code)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_worker_measures_one_configuration_and_the_cache_saves_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # `bench` is a top-level folder, run as `python -m bench.x`
    bench = importlib.import_module("bench.macro_cost")
    base = {"layers": 3, "rsp": True, "steps": 1, "warmup": 0, "device": "cpu", "threads": 1}
    cached, uncached = bench.worker({**base, "reuse": True}), bench.worker({**base, "reuse": False})
    # L = 3, S = 4: 4 * (1 + 2 * 4) cached alignments vs 4 * (1 + 5 + 9) per-node ones
    assert (cached["align_calls"], uncached["align_calls"]) == (36, 60)
    assert 0 < cached["saved_mib"] < uncached["saved_mib"]
    assert cached["step_s"] > 0 and cached["params_m"] == uncached["params_m"]
    assert "| 3 | on | on | 36 |" in bench.table([cached, uncached], "cpu")
