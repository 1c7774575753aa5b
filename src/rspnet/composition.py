"""Hydra from Python: `compose(*overrides)` builds the CLI's config, `run(stage, *overrides)` runs a stage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

import rspnet.cli  # noqa: F401  (registers the resolvers the root config uses)
from rspnet.errors import ConfigError
from rspnet.resources import config_dir as _shipped_config_dir
from rspnet.utils.validate import MOVED, check_moved


def config_dir() -> str:
    """The folder of the root `config.yaml` (the one the `rspnet` CLI composes)."""
    return str(_shipped_config_dir())


def compose(*overrides: str, hydra: bool = False) -> DictConfig:
    """The config `rspnet <overrides>` would run with, composed outside any Hydra app.

    As on the command line, `paths.output_dir` defaults to `outputs/<stage>/<date>_<time>`.
    `hydra=True` also returns the `hydra` node (sweeper, launcher, mode), as tests of recipes need.
    """
    check_moved(overrides)
    try:
        if GlobalHydra.instance().is_initialized() and not hydra:  # inside the CLI's app (a stage loading zoo:)
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        else:
            GlobalHydra.instance().clear()  # a test or notebook that composed before: start from the shipped conf/
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
    except HydraException as e:  # unknown group option, bad override syntax: one line, as the CLI's errors
        raise ConfigError(f"overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from e
    if cfg.paths.get("output_dir") in (None, ""):
        with open_dict(cfg):  # the CLI's default run dir (Hydra's ${now:...} is not resolvable outside the app)
            cfg.paths.output_dir = str(
                Path("outputs") / str(cfg.stage.name) / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            )
    return cfg


def from_saved(config: DictConfig | str | Path, stage: str, *overrides: str) -> DictConfig:
    """A saved run's config (its `config.yaml`) with `stage`'s own options and `key=value` overrides on top.

    `paths.output_dir` is a new run dir unless given, so the saved run is never overwritten;
    group choices (`dataset=camvid`) cannot be re-applied to a resolved config and are refused.
    """
    base = OmegaConf.load(config) if isinstance(config, (str, Path)) else config.copy()
    check_moved(overrides)
    for o in overrides:
        key = o.lstrip("+").split("=", 1)[0]
        if "=" not in o or ("." not in key and isinstance(base.get(key), DictConfig)):
            raise ConfigError(
                f"override {o}: with config= only key=value options apply (not group choices like dataset=NAME)"
            )
    fresh = compose(f"stage={stage}")
    cfg = OmegaConf.merge(
        base,
        {"stage": fresh.stage, "paths": {"output_dir": fresh.paths.output_dir}},
        {} if "inference" in base else {"inference": _moved_inference(base, fresh)},
        OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]),
    )
    assert isinstance(cfg, DictConfig)
    return cfg


def _moved_inference(saved: DictConfig, fresh: DictConfig) -> DictConfig:
    """The `inference` group of a config saved before it existed: its `train.inference`/`train.slide_*` values."""
    moved = {
        new.split(".", 1)[1]: saved.train[old.split(".", 1)[1]]
        for old, new in MOVED.items()
        if old.split(".", 1)[1] in saved.get("train", {})
    }
    result = OmegaConf.merge(fresh.inference, moved)
    assert isinstance(result, DictConfig)
    return result


def run(stage: str, *overrides: str, config: DictConfig | str | Path | None = None) -> dict[str, Any]:
    """Run `rspnet stage=<stage> <overrides>` in this process; returns the stage's result dict.

    Same behaviour as the CLI: the resolved config is saved to `paths.output_dir/config.yaml`,
    the run is seeded, loggers are closed at the end. Errors raise `rspnet.errors.RSPNetError`.
    `config=`: start from a saved run's `config.yaml` instead of the defaults (see `from_saved`).
    """
    from rspnet.stages import run_stage  # torch and Lightning: only when a stage runs

    cfg = compose(f"stage={stage}", *overrides) if config is None else from_saved(config, stage, *overrides)
    return run_stage(cfg)
