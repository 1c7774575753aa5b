"""`logger=` choices are `_target_` configs; W&B arguments are settable and `ckpt_path=last` resumes the W&B run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rspnet.errors import ConfigError
from rspnet.utils.loggers import WANDB_ID_FILE, build_logger, finish_loggers


@pytest.mark.parametrize(
    ("choice", "cls"), [("csv", "CSVLogger"), ("tensorboard", "TensorBoardLogger"), ("wandb", "WandbLogger")]
)
def test_each_logger_choice_is_instantiated_from_its_target(
    make_cfg, tmp_path: Path, offline_wandb, choice: str, cls: str
) -> None:
    logger = build_logger(make_cfg(f"logger={choice}"), tmp_path / "run")
    assert type(logger).__name__ == cls
    logger.log_metrics({"val/miou": 0.5}, step=0)
    logger.finalize("success")
    assert any((tmp_path / "run").rglob("*")), "the logger writes under the run dir"


@pytest.mark.parametrize("choice", ["csv", "tensorboard"])
def test_recipe_run_labels_do_not_reach_loggers_without_them(make_cfg, tmp_path: Path, choice: str) -> None:
    cfg = make_cfg(f"logger={choice}", "+logger.group=camvid", "+logger.tags=[a]")  # as experiment=camvid sets them
    assert build_logger(cfg, tmp_path) is not False


def test_logger_none_is_no_logger(make_cfg, tmp_path: Path) -> None:
    assert build_logger(make_cfg("logger=none"), tmp_path) is False


def test_an_unknown_logger_argument_is_a_config_error(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="logger .*CSVLogger.*check the logger"):
        build_logger(make_cfg("logger=csv", "+logger.colour=red"), tmp_path)


def test_every_wandb_argument_is_settable(make_cfg, tmp_path: Path, offline_wandb) -> None:
    cfg = make_cfg(
        "logger=wandb",
        "logger.name=arm-a",
        "logger.id=abc123",
        "logger.notes=first try",
        "logger.tags=[x,y]",
        "logger.group=g",
        "logger.project=proj",
        "logger.entity=team",
    )
    run = build_logger(cfg, tmp_path / "run").experiment
    assert (run.name, run.id, run.notes, list(run.tags), run.group, run.project) == (
        "arm-a",
        "abc123",
        "first try",
        ["pipeline", "x", "y"],  # the stage first (rspnet.utils.labels)
        "g",
        "proj",
    )
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


@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_a_stage_run_prints_no_lightning_tip_or_known_deprecation(tmp_path: Path, logger: str) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_home")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rspnet.cli",
            "stage=cell_search",
            f"logger={logger}",
            "print_config=false",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "dataset.num_train=8",
            "dataset.num_val=4",
            "model.search_layers=1",
            "model.scales=[4,8]",
            "model.base_width=4",
            "dataset.image_size=[32,64]",
            "dataset.crop_size=[32,64]",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={tmp_path / 'run'}",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "`Trainer.fit` stopped" in output  # Lightning's own info lines still come through
    for noise in ("Tip:", "litlogger", "litmodels", "LeafSpec", "anonymous setting"):
        assert noise not in output, noise


def test_callbacks_group_instantiates_the_chosen_callbacks(make_cfg) -> None:
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, RichProgressBar

    from rspnet.utils.trainer import user_callbacks

    cfg = make_cfg("callbacks=[default,early_stopping,rich_progress]", "callbacks.early_stopping.patience=3")
    made = user_callbacks(cfg, logger=object())
    assert [type(c) for c in made] == [LearningRateMonitor, EarlyStopping, RichProgressBar]
    assert made[1].patience == 3 and made[1].monitor == "select/miou"
    assert user_callbacks(cfg, logger=False)[0].__class__ is EarlyStopping  # no logger: no LR monitor
    assert user_callbacks(make_cfg("callbacks=default", "callbacks.lr_monitor=null"), logger=object()) == []
    assert user_callbacks(make_cfg("callbacks=none"), logger=object()) == []
    with pytest.raises(ConfigError, match="callbacks.early_stopping .*EarlyStopping"):
        user_callbacks(make_cfg("callbacks=early_stopping", "+callbacks.early_stopping.colour=red"), logger=False)


def test_build_trainer_adds_only_the_callbacks_it_is_given(make_cfg, tmp_path: Path) -> None:
    from pytorch_lightning.callbacks import EarlyStopping

    from rspnet.utils.trainer import build_trainer, run_callbacks

    cfg = make_cfg("callbacks=[default,early_stopping]")
    assert not any(isinstance(c, EarlyStopping) for c in build_trainer(cfg, tmp_path, logger=False).callbacks)
    trainer = build_trainer(cfg, tmp_path, logger=False, callbacks=run_callbacks(cfg, tmp_path, False))
    assert any(isinstance(c, EarlyStopping) for c in trainer.callbacks)


def test_a_resumed_stage_logs_into_the_same_offline_wandb_run(make_cfg, tmp_path: Path, offline_wandb) -> None:
    from rspnet.stages.cell_search import run as run_cell_search

    out = tmp_path / "run"
    tiny = [
        "stage=cell_search",
        "debug=tiny",
        "model=micro",
        "logger=wandb",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
    ]
    run_cell_search(make_cfg(*tiny, "trainer.max_epochs=1", out=out))
    finish_loggers()
    run_id = (out / WANDB_ID_FILE).read_text().strip()
    run_cell_search(make_cfg(*tiny, "trainer.max_epochs=2", "ckpt_path=last", out=out))
    finish_loggers()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    # two sessions, one W&B run id (wandb adds "-1" to the folder of a second session started in the same second)
    assert len(runs) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", r.name) for r in runs)
