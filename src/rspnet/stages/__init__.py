"""Stages: `stage=<name>` -> `rspnet.stages.<name>.run(cfg) -> dict`, run through `run_stage`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from rspnet.errors import ConfigError
from rspnet.utils import run_record
from rspnet.utils.distributed import rank_errors
from rspnet.utils.io import is_pending
from rspnet.utils.lifecycle import stop_on_signals
from rspnet.utils.loggers import finish_loggers
from rspnet.utils.runtime import (
    flush_config,
    output_dir,
    print_config_tree,
    save_config_on_first_write,
    seed_everything,
)
from rspnet.utils.threads import apply as apply_thread_policy
from rspnet.utils.validate import validate_config

# every stage is a module of this name with `run(cfg) -> dict` (and a conf/stage/<name>.yaml)
STAGES = (
    "data_stats",
    "cell_search",
    "macro_search",
    "train",
    "eval",
    "predict",
    "export",
    "summary",
    "sample_arch",
    "profile",
    "pipeline",
)


def get_stage(name: str) -> Callable[[DictConfig], dict]:
    """Return `rspnet.stages.<name>.run` for a stage name (clear error if unknown)."""
    if name not in STAGES:
        raise ConfigError(f"stage={name} is unknown; choose one of: {', '.join(STAGES)}")
    # imported on demand: a stage's dependencies (onnx, cv2, the models) load only when it runs
    return importlib.import_module(f"rspnet.stages.{name}").run


def run_stage(cfg: DictConfig) -> dict:
    """Run `cfg.stage.name` as the CLI and the pipeline do: checked, seeded, config saved, loggers closed.

    The resolved config is saved to `paths.output_dir/config.yaml` just before the stage's first
    write (a run refused for bad input leaves the folder untouched), and dropped if the stage fails.
    A run that succeeds writes `done.json` (wall/CPU time, its result); `ckpt_path=last` returns the
    result of a finished run instead of running it again (rspnet.utils.run_record).
    """
    stage = get_stage(str(cfg.stage.name))
    validate_config(cfg)  # a wrong type is one line naming the key, not a traceback from deep inside
    out = output_dir(cfg)
    done = run_record.finished_result(cfg, out)  # ckpt_path=last and this run finished: its recorded result
    if done is not None:
        return done
    with run_record.hold(out):  # one process at a time in a run folder
        # another launch of the same run may have finished it between the check above and the lock
        done = run_record.finished_result(cfg, out)
        return done if done is not None else _run_held(cfg, stage, out)


def _run_held(cfg: DictConfig, stage: Callable[[DictConfig], dict], out: Path) -> dict:
    """run_stage's body, with the run folder's lock held."""
    if cfg.get("print_config", True):
        print_config_tree(cfg)
    apply_thread_policy(cfg)  # logs the pools this stage runs with
    seed_everything(int(cfg.get("seed", 0)))
    save_config_on_first_write(cfg, out)  # not before the stage checked its inputs (docs/reliability.md)
    record = run_record.start(cfg, out)  # wall and CPU clocks; done.json at success
    ok = False
    try:
        # SIGTERM/SIGINT: one StoppedError (exit 128 + signum); an error in a spawned DDP rank stays one line
        with stop_on_signals(out), rank_errors():
            result = stage(cfg) or {}
            record.write(result)
        ok = True
        return result
    finally:
        # stopped after writing, with a checkpoint to resume from (its own, or a pipeline stage's below it):
        # keep this attempt's time for the resume (a run refused before its first write leaves the folder untouched)
        if not ok and not is_pending(out) and next(out.rglob("checkpoints/last.ckpt"), None) is not None:
            record.interrupted()
        flush_config(out, write=ok)
        finish_loggers()  # each stage is its own W&B run
