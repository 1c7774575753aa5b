"""WriteResult: the one rank-0 writer of a stage's result JSON."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rspnet.utils.results import WriteResult


def _result(tag: str, trainer: Any, module: Any) -> dict:
    return {"tag": tag, "epoch": trainer.current_epoch, "nan": float("nan")}


def test_written_by_rank_zero_only_and_returned_in_every_process(tmp_path: Path) -> None:
    make = functools.partial(_result, "fit")  # picklable: ddp_spawn ships callbacks to the workers
    zero, other = WriteResult(tmp_path / "a.json", make), WriteResult(tmp_path / "b.json", make)
    zero.on_fit_end(SimpleNamespace(is_global_zero=True, current_epoch=3), None)
    other.on_fit_end(SimpleNamespace(is_global_zero=False, current_epoch=3), None)
    assert json.loads((tmp_path / "a.json").read_text()) == {"tag": "fit", "epoch": 3, "nan": None}
    assert not (tmp_path / "b.json").exists()
    assert other.read("result")["epoch"] == 3  # a non-zero rank returns its own result, never waits for the file
    parent = WriteResult(tmp_path / "a.json", make)  # a ddp_spawn parent: the fit ran elsewhere, read rank 0's file
    assert parent.read("result") == zero.read("result")


def test_test_results_only_on_test_end(tmp_path: Path) -> None:
    writer = WriteResult(tmp_path / "metrics.json", functools.partial(_result, "test"), on="test")
    writer.on_fit_end(SimpleNamespace(is_global_zero=True, current_epoch=0), None)
    assert not (tmp_path / "metrics.json").exists()
    writer.on_test_end(SimpleNamespace(is_global_zero=True, current_epoch=0), None)
    assert json.loads((tmp_path / "metrics.json").read_text())["tag"] == "test"
    with pytest.raises(ValueError, match="use 'fit' or 'test'"):
        WriteResult(tmp_path / "x.json", functools.partial(_result, "x"), on="predict")
