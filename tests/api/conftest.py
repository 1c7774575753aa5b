"""A tiny trained checkpoint shared by the API tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import compose_cfg


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of stage=train at the micro size (paper_like genotype, 19 classes)."""
    from rspnet.architecture import PAPER_GENOTYPE
    from rspnet.stages.train import run as run_train

    out = tmp_path_factory.mktemp("api_trained")
    return Path(run_train(compose_cfg(out, "stage=train", f"genotype={PAPER_GENOTYPE}"))["last_ckpt"])
