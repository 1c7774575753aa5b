"""Hydra from Python: `compose(*overrides)` builds the CLI's config, `run(stage, *overrides)` runs a stage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict


def config_dir() -> str:
    """The folder of the root `config.yaml` (the one the `rspnet` CLI composes)."""
    from rspnet.cli import CONFIG_DIR

    return str(CONFIG_DIR)


def compose(*overrides: str) -> DictConfig:
    """The config `rspnet <overrides>` would run with, composed outside any Hydra app.

    As on the command line, `paths.output_dir` defaults to `outputs/<date>/<time>`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from rspnet.errors import ConfigError

    try:
        if GlobalHydra.instance().is_initialized():  # inside the CLI's app (a stage loading zoo:): its own search path
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        else:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except HydraException as e:  # unknown group option, bad override syntax: one line, as the CLI's errors
        raise ConfigError(f"overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from e
    if cfg.paths.get("output_dir") in (None, ""):
        with open_dict(cfg):  # the CLI's default run dir (Hydra's ${now:...} is not resolvable outside the app)
            cfg.paths.output_dir = str(Path("outputs") / dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    return cfg


def from_saved(config: DictConfig | str | Path, stage: str, *overrides: str) -> DictConfig:
    """A saved run's config (its `config.yaml`) with `stage`'s own options and `key=value` overrides on top.

    `paths.output_dir` is a new run dir unless given, so the saved run is never overwritten;
    group choices (`dataset=camvid`) cannot be re-applied to a resolved config and are refused.
    """
    from omegaconf import OmegaConf

    from rspnet.errors import ConfigError

    base = OmegaConf.load(config) if isinstance(config, (str, Path)) else config.copy()
    for o in overrides:
        key = o.lstrip("+").split("=", 1)[0]
        if "=" not in o or ("." not in key and isinstance(base.get(key), DictConfig)):
            raise ConfigError(f"override {o}: with config= only key=value options apply (not group choices like dataset=NAME)")
    fresh = compose(f"stage={stage}")
    cfg = OmegaConf.merge(base, {"stage": fresh.stage, "paths": {"output_dir": fresh.paths.output_dir}},
                          OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    assert isinstance(cfg, DictConfig)
    return cfg


def run(stage: str, *overrides: str, config: DictConfig | str | Path | None = None) -> dict[str, Any]:
    """Run `rspnet stage=<stage> <overrides>` in this process; returns the stage's result dict.

    Same behaviour as the CLI: the resolved config is saved to `paths.output_dir/config.yaml`,
    the run is seeded, loggers are closed at the end. Errors raise `rspnet.errors.RSPNetError`.
    `config=`: start from a saved run's `config.yaml` instead of the defaults (see `from_saved`).
    """
    import rspnet.cli

    cfg = compose(f"stage={stage}", *overrides) if config is None else from_saved(config, stage, *overrides)
    return rspnet.cli.run(cfg)
