"""The conventions users of lightning-hydra-template expect (issue 27 item 5).

The run dir names the stage, the app is `rspnet` (help, log file), the config tree is printed on
rank 0 only, every run has tags and a readable W&B name, and checkpointing is a config group.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from rspnet.composition import compose
from rspnet.errors import ConfigError
from rspnet.stages import STAGES
from rspnet.utils.labels import run_name, run_tags
from rspnet.utils.lifecycle import best_checkpoint, last_checkpoints
from rspnet.utils.loggers import build_logger, finish_loggers
from rspnet.utils.runtime import print_config_tree
from rspnet.utils.validate import validate_config

STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"
RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@pytest.fixture
def hydra_job():
    """`hydra_job(*overrides, multirun=False)`: the composed config, with HydraConfig set as inside the CLI."""

    def _set(*overrides: str, multirun: bool = False):
        cfg = compose("logger=none", *overrides, hydra=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _set
    HydraConfig.instance().cfg = None


# -- run dir and app name ----------------------------------------------------------------------------------
def test_run_and_sweep_dirs_name_the_stage_and_the_job_is_rspnet() -> None:
    cfg = compose("stage=train", hydra=True)
    cfg.paths.output_dir = None  # as Hydra sees it (compose() fills it in afterwards)
    assert re.fullmatch(rf"outputs/train/{STAMP}", cfg.hydra.run.dir)
    assert re.fullmatch(rf"multirun/train/{STAMP}", cfg.hydra.sweep.dir)
    assert cfg.hydra.job.name == "rspnet" and cfg.hydra.help.app_name == "rspnet"
    # from Python too (rspnet.compose / rspnet.run): the same pattern
    assert re.fullmatch(rf"outputs/eval/{STAMP}", compose("stage=eval").paths.output_dir)
    given = compose("stage=train", "paths.output_dir=runs/a", hydra=True)
    assert given.hydra.run.dir == "runs/a" and given.hydra.sweep.dir == "runs/a"


def test_help_introduces_rspnet_with_every_stage_and_group(rspnet_cli) -> None:
    proc = rspnet_cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("rspnet") and "cli is powered" not in text and "cli" not in text.split()
    for stage in STAGES:
        assert re.search(rf"^{stage}\s", text, flags=re.M), f"--help does not list stage {stage}"
    for option in ("experiment=", "debug=tiny", "ckpt=", "ckpt_path=last", "paths.output_dir=", "tags="):
        assert option in text
    assert "checkpoint: default, every_epoch" in text


def test_a_cli_run_writes_rspnet_log_in_the_stage_named_run_dir(rspnet_cli, tmp_path: Path) -> None:
    proc = rspnet_cli("stage=summary", "debug=tiny", "genotype=paper_like", "print_config=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1 and re.fullmatch(rf"summary/{STAMP}", runs[0].relative_to(tmp_path / "outputs").as_posix())
    assert (runs[0] / "rspnet.log").is_file() and not (runs[0] / "cli.log").exists()
    assert "CONFIG" in proc.stdout  # the config tree, printed once (rank 0)
    assert proc.stdout.count("CONFIG") == 1


# -- config tree on rank 0 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("var", ["RANK", "LOCAL_RANK", "SLURM_PROCID"])
def test_the_config_tree_is_printed_on_rank_zero_only(make_cfg, capsys, monkeypatch, var: str) -> None:
    for name in RANK_VARS:
        monkeypatch.delenv(name, raising=False)
    cfg = make_cfg("stage=train")
    print_config_tree(cfg)
    assert "CONFIG" in capsys.readouterr().out
    monkeypatch.setenv(var, "0")
    print_config_tree(cfg)
    assert "CONFIG" in capsys.readouterr().out
    monkeypatch.setenv(var, "1")
    print_config_tree(cfg)
    assert capsys.readouterr().out == ""


# -- tags and run names -------------------------------------------------------------------------------------
def test_tags_join_stage_root_tags_and_the_recipes_logger_tags(make_cfg) -> None:
    cfg = make_cfg("stage=train", "tags=[baseline,lr]", "+logger.tags=[recipe,baseline]")
    assert run_tags(cfg) == ["train", "baseline", "lr", "recipe"]
    assert run_name(cfg) == "train run"  # outside the CLI: the stage and the run dir's name
    with pytest.raises(ConfigError, match=r"tags=.*expected a list of labels"):
        validate_config(make_cfg("tags=baseline"))


def test_cli_runs_are_named_by_stage_experiment_and_overrides(hydra_job) -> None:
    cfg = hydra_job("experiment=demo", "stage=train", "model.layers=2", "paths.output_dir=x", "tags=[a]")
    assert run_name(cfg) == "train demo model.layers=2"
    assert run_tags(cfg)[:3] == ["train", "demo", "a"]
    assert not any(t.startswith("sweep-") for t in run_tags(cfg))


def test_every_job_of_a_plain_sweep_is_tagged_with_its_sweep(hydra_job) -> None:
    cfg = hydra_job("stage=cell_search", "rsp.enabled=false", multirun=True)
    sweep = Path(cfg.hydra.sweep.dir).name
    assert run_tags(cfg) == ["cell_search", f"sweep-{sweep}"]
    assert run_name(cfg) == "cell_search rsp.enabled=false"


def test_the_wandb_run_gets_the_tags_and_the_name(make_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    try:
        run = build_logger(make_cfg("stage=train", "logger=wandb", "tags=[baseline]"), tmp_path / "run").experiment
        assert (list(run.tags), run.name) == (["train", "baseline"], "train run")
        named = make_cfg("stage=train", "logger=wandb", "logger.name=arm-a")
        assert build_logger(named, tmp_path / "run2").experiment.name == "arm-a"
    finally:
        finish_loggers()


# -- the checkpoint group ------------------------------------------------------------------------------------
def test_the_checkpoint_groups_keys_reach_the_model_checkpoint(make_cfg, tmp_path: Path) -> None:
    cb = best_checkpoint(make_cfg("checkpoint.save_top_k=3", "checkpoint.filename='b{epoch}'"), tmp_path, "select/miou")
    assert (cb.save_top_k, cb.filename, cb.monitor, cb.mode) == (3, "b{epoch}", "select/miou", "max")
    assert Path(cb.dirpath) == tmp_path / "checkpoints"
    every = best_checkpoint(make_cfg("checkpoint=every_epoch"), tmp_path, "select/miou")
    assert (every.save_top_k, every.filename) == (-1, "epoch{epoch:03d}")
    assert best_checkpoint(make_cfg("checkpoint.save_weights_only=true"), tmp_path, "select/miou").save_weights_only


def test_every_n_train_steps_goes_to_last_ckpt_not_to_the_best(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("checkpoint.every_n_train_steps=5")
    last = [c for c in last_checkpoints(cfg, tmp_path) if hasattr(c, "filename")]
    assert [(c.filename, c._every_n_train_steps) for c in last] == [("last", 0), ("last", 5)]
    assert (
        best_checkpoint(cfg, tmp_path, "select/miou")._every_n_train_steps == 0
    )  # a best checkpoint only after validation
    plain = [c for c in last_checkpoints(make_cfg(), tmp_path) if hasattr(c, "filename")]
    assert [(c.filename, c._every_n_epochs) for c in plain] == [("last", 1)]  # last.ckpt every epoch, always


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+checkpoint.monitor=val/loss", "checkpoint.monitor: set by rspnet"),
        ("+checkpoint.save_last=false", "checkpoint.save_last: set by rspnet"),
        ("checkpoint.filename=last", "checkpoint.filename=last: set by rspnet"),
        ("+checkpoint.colour=red", r"checkpoint \(.*ModelCheckpoint\).*check the checkpoint\.\* keys"),
    ],
)
def test_checkpoint_keys_rspnet_sets_or_lightning_lacks_are_one_error(make_cfg, tmp_path, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        best_checkpoint(make_cfg(override), tmp_path, "select/miou")


def test_checkpoint_save_top_k_is_type_checked(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"checkpoint.save_top_k=-2 is invalid"):
        validate_config(make_cfg("checkpoint.save_top_k=-2"))


def test_a_sweep_over_the_stage_without_an_output_dir_is_one_error(rspnet_cli, tmp_path: Path) -> None:
    proc = rspnet_cli("-m", "stage=summary,data_stats", "debug=tiny", cwd=tmp_path)
    assert proc.returncode == 2
    assert "rspnet: error: stage=summary,data_stats: a sweep over the stage needs paths.output_dir" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.glob("multirun/*/*/0"))  # no job ran
