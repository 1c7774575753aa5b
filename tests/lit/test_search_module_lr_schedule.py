"""The weight-LR cosine of step-limited searches (SearchModule): it spans the run, annealed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspnet.lit.search_module import SearchModule, steps_to_epochs
from rspnet.stages import run_stage as run
from tests.conftest import CELL

pytestmark = pytest.mark.reliability


def test_steps_to_epochs_counts_arch_and_weight_steps() -> None:
    assert steps_to_epochs(8, 1, warmup_epochs=0) == 4  # 2 optimizer steps per batch
    assert steps_to_epochs(9, 2, warmup_epochs=1) == 3  # 2 (warm-up) + 4 + 4
    assert steps_to_epochs(5, float("inf"), warmup_epochs=0) == 1


def test_step_limited_search_anneals_the_lr_once(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """trainer.max_epochs=-1 + max_steps: the cosine spans the run (it used to get T_max=1 and oscillate)."""
    lrs: list[float] = []
    t_max: list[int] = []

    def record(self: SearchModule) -> None:
        t_max.append(self.lr_schedulers().T_max)
        lrs.append(self.optimizers()[0].param_groups[0]["lr"])

    monkeypatch.setattr(SearchModule, "on_train_epoch_start", record, raising=False)
    # 8 train images, arch_split 0.5, batch 4: one batch per epoch, two optimizer steps per batch -> 5 epochs
    run(
        make_cfg(
            *CELL, "trainer.max_epochs=-1", "trainer.max_steps=10", "trainer.limit_val_batches=0", out=tmp_path / "run"
        )
    )
    assert len(lrs) == 5 and set(t_max) == {5}
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs  # strictly decreasing: no restart of the cosine
