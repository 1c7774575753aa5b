"""Shared fixtures for the fixed-architecture stages: tiny configs and one trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from rspnet.composition import compose
from rspnet.genotype import Genotype

OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]
# synthetic data small enough for seconds per epoch on one core (conf/debug/tiny.yaml)
TINY = ["debug=tiny", "trainer.max_epochs=1", "model.layers=2"]


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    """Compose conf/ with the tiny overrides, writing under `out`."""
    cfg = compose(*TINY, *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@pytest.fixture(scope="session")
def genotype_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid genotype.json."""
    return Genotype.from_ops(OPS, rsp=True).save(tmp_path_factory.mktemp("geno") / "genotype.json")


@pytest.fixture
def tiny_cfg(tmp_path: Path, genotype_file: Path) -> Callable[..., DictConfig]:
    """`tiny_cfg("stage=train", ..., out=None)` -> tiny config with `genotype=` set."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_cfg(out or tmp_path / "run", f"genotype={genotype_file}", *overrides)

    return _make


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, genotype_file: Path) -> dict:
    """One epoch of stage=train; returns its result dict plus `out` (shared, read-only for tests)."""
    from rspnet.stages.train import run as run_train

    out = tmp_path_factory.mktemp("trained")
    result = run_train(compose_cfg(out, "stage=train", f"genotype={genotype_file}"))
    return result | {"out": out}
