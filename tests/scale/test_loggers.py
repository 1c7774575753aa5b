"""`logger=` choices are `_target_` configs; W&B arguments are settable and `ckpt_path=last` resumes the W&B run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspnet.errors import ConfigError
from rspnet.utils.loggers import WANDB_ID_FILE, build_logger, finish_loggers


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    yield
    finish_loggers()


@pytest.mark.parametrize(("choice", "cls"), [("csv", "CSVLogger"), ("tensorboard", "TensorBoardLogger"),
                                             ("wandb", "WandbLogger")])
def test_each_logger_choice_is_instantiated_from_its_target(make_cfg, tmp_path: Path, offline_wandb, choice: str, cls: str) -> None:
    logger = build_logger(make_cfg(f"logger={choice}"), tmp_path / "run")
    assert type(logger).__name__ == cls
    logger.log_metrics({"val/miou": 0.5}, step=0)
    logger.finalize("success")
    assert any((tmp_path / "run").rglob("*")), "the logger writes under the run dir"


def test_logger_none_is_no_logger(make_cfg, tmp_path: Path) -> None:
    assert build_logger(make_cfg("logger=none"), tmp_path) is False


def test_an_unknown_logger_argument_is_a_config_error(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="logger .*CSVLogger.*check the logger"):
        build_logger(make_cfg("logger=csv", "+logger.colour=red"), tmp_path)


def test_every_wandb_argument_is_settable(make_cfg, tmp_path: Path, offline_wandb) -> None:
    cfg = make_cfg("logger=wandb", "logger.name=arm-a", "logger.id=abc123", "logger.notes=first try", "logger.tags=[x,y]",
                   "logger.group=g", "logger.project=proj", "logger.entity=team")
    run = build_logger(cfg, tmp_path / "run").experiment
    assert (run.name, run.id, run.notes, list(run.tags), run.group, run.project) == \
        ("arm-a", "abc123", "first try", ["x", "y"], "g", "proj")
    assert (tmp_path / "run" / WANDB_ID_FILE).read_text().strip() == "abc123"


def test_ckpt_path_last_resumes_the_same_wandb_run(make_cfg, tmp_path: Path, offline_wandb) -> None:
    out = tmp_path / "run"
    first = build_logger(make_cfg("logger=wandb"), out).experiment.id
    finish_loggers()
    assert (out / WANDB_ID_FILE).read_text().strip() == first
    resumed = build_logger(make_cfg("logger=wandb", "ckpt_path=last"), out).experiment.id
    finish_loggers()
    fresh = build_logger(make_cfg("logger=wandb"), out).experiment.id  # without ckpt_path: a new run
    assert resumed == first and fresh != first
