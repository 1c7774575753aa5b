"""Fixtures of the scale tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspnet.utils.loggers import finish_loggers


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline, its home dirs in the test's tmp_path; every open run finished afterwards."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    yield
    finish_loggers()
