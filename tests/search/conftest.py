"""Fixtures for the stage-1 tests: a tiny supernet, tiny tensors, and a Trainer-driven fit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from rspnet.models.supernet import CellSupernet


def _tiny_net(rsp: bool = True, num_classes: int = 3) -> CellSupernet:
    return CellSupernet(num_classes, base_width=4, scales=[4, 8], layers=1, rsp=rsp, head_channels=8)


def _tiny_loader(n: int = 8, num_classes: int = 3, size: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, num_classes, (n, size, size), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


@pytest.fixture
def tiny_net() -> Callable[..., CellSupernet]:
    """`tiny_net(rsp=True, num_classes=3)`: 2 scales x 1 layer at B = 4, fast enough for many CPU steps."""
    return _tiny_net


@pytest.fixture
def tiny_loader() -> Callable[..., DataLoader]:
    """`tiny_loader(n=8, num_classes=3, size=16, batch_size=4, seed=0)`: random images and masks."""
    return _tiny_loader


@pytest.fixture
def fit() -> Callable[..., pl.Trainer]:
    """`fit(module, weight_loader, arch_loader, val_loader=None, epochs=1)` with a bare Trainer."""

    def _fit(
        module: pl.LightningModule, weight: DataLoader, arch: DataLoader, val: DataLoader | None = None, epochs: int = 1
    ) -> pl.Trainer:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if val is not None else 0,
        )
        trainer.fit(module, CombinedLoader({"weight": weight, "arch": arch}, "max_size_cycle"), val)
        return trainer

    return _fit
