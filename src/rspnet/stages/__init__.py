"""Stage registry: `stage=<name>` -> `rspnet.stages.<module>.run_<name>(cfg) -> dict`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from omegaconf import DictConfig

from rspnet.errors import ConfigError

STAGES: dict[str, str] = {
    "data_stats": "rspnet.stages.data_stats",
    "cell_search": "rspnet.stages.search",
    "macro_search": "rspnet.stages.macro_search",
    "train": "rspnet.stages.train",
    "eval": "rspnet.stages.evaluate",
    "predict": "rspnet.stages.predict",
    "export": "rspnet.stages.export",
    "summary": "rspnet.stages.summary",
    "sample_arch": "rspnet.stages.sample_arch",
    "profile": "rspnet.stages.profile",
    "pipeline": "rspnet.stages.pipeline",
}


def get_stage(name: str) -> Callable[[DictConfig], dict]:
    """Return the `run_<name>` function for a stage name (clear error if unknown)."""
    if name not in STAGES:
        raise ConfigError(f"stage={name} is unknown; choose one of: {', '.join(STAGES)}")
    module = importlib.import_module(STAGES[name])
    return getattr(module, f"run_{name}")
