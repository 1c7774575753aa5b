"""What a run is called in the loggers: its tags and a readable name (W&B run name, tags).

* tags: the stage, the experiment (when one was chosen), the root `tags` (`tags=[a,b]`), the
  logger's own `logger.tags` (set by the recipes), and in a multirun `sweep-<sweep dir name>`, so
  that the jobs of a plain `-m` sweep are one filter away.
* name: `logger.name` when given, else the stage, the experiment and the job's command-line
  overrides (`train camvid rsp.enabled=false`); from Python (`rspnet.run`) the stage and the
  run dir's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

# overrides that are not part of a run's name: the stage and experiment are named already, the
# rest says where the run writes or how it resumes
NAME_SKIP = ("stage", "experiment", "paths", "ckpt_path", "hydra", "tags", "logger")
NAME_MAX = 128  # W&B shows long names truncated anyway


def _hydra_job() -> tuple[dict[str, Any], list[str], str | None]:
    """(group choices, this job's command-line overrides, sweep dir name or None) inside the CLI; empty outside."""
    if not HydraConfig.initialized():
        return {}, [], None
    hc = HydraConfig.get()
    sweep = Path(str(hc.sweep.dir)).name if hc.mode == RunMode.MULTIRUN else None
    return dict(hc.runtime.choices), [str(o) for o in hc.overrides.task], sweep


def run_tags(cfg: DictConfig) -> list[str]:
    """The run's tags, in order, without repeats (module docstring)."""
    choices, _, sweep = _hydra_job()
    logger = cfg.get("logger")
    tags = [str(cfg.stage.name), choices.get("experiment")]
    tags += [*(cfg.get("tags") or []), *((logger.get("tags") if isinstance(logger, DictConfig) else None) or [])]
    tags.append(f"sweep-{sweep}" if sweep else None)
    return list(dict.fromkeys(str(t) for t in tags if t not in (None, "")))


def run_name(cfg: DictConfig) -> str:
    """`logger.name`, else a readable name from the stage, the experiment and the overrides (module docstring)."""
    logger = cfg.get("logger")
    given = logger.get("name") if isinstance(logger, DictConfig) else None
    if given:
        return str(given)
    choices, overrides, _ = _hydra_job()
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] not in NAME_SKIP]
    if not HydraConfig.initialized():
        kept = [Path(str(cfg.paths.get("output_dir") or "")).name]
    parts = [str(cfg.stage.name), choices.get("experiment"), *kept]
    return " ".join(str(p) for p in parts if p)[:NAME_MAX]


def run_labels(cfg: DictConfig) -> dict[str, Any]:
    """`{"name": ..., "tags": [...]}` for a logger that takes them (WandbLogger)."""
    return {"name": run_name(cfg), "tags": run_tags(cfg)}
