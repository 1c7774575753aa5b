"""Shared fixtures: compose the Hydra config (rspnet.composition.compose) once per test with overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from rspnet.composition import compose

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the thread policy honours it: 1 thread in run_stage and subprocesses
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`make_cfg("stage=cell_search", "model=tiny", out=...)` -> composed config writing under tmp."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        cfg = compose("logger=none", "print_config=false", *overrides)
        with open_dict(cfg):
            if not any(o.startswith("paths.output_dir=") for o in overrides):
                cfg.paths.output_dir = str(out or tmp_path / "run")
        return cfg

    return _make


@pytest.fixture
def rspnet_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`rspnet_cli(*args, cwd=REPO, timeout=600, env=None)`: `python -m rspnet.cli ARGS` in a subprocess.

    One CPU thread, W&B offline, one-line errors (HYDRA_FULL_ERROR=0); `env` adds variables; output captured.
    """

    def run(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict[str, str] | None = None):
        full = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
        full |= {"HYDRA_FULL_ERROR": "0", **(env or {})}
        cmd = [sys.executable, "-m", "rspnet.cli", *args]
        return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`requires_gpu` tests skip cleanly without CUDA (they run on a GPU machine: `pytest -m requires_gpu`)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="requires_gpu: no CUDA device")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)
