"""What a run does with its composed config: output dir, required options, rich tree printing, saving the resolved config, launch rank, seeding."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

from rspnet.errors import ConfigError
from rspnet.utils.io import atomic_write_text, before_first_write, take_pending


def output_dir(cfg: DictConfig) -> Path:
    """Return `paths.output_dir` as an existing, writable folder (clear error otherwise)."""
    value = cfg.paths.get("output_dir")
    if not value:
        raise ConfigError("paths.output_dir is not set; pass paths.output_dir=DIR")
    path = Path(str(value))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"paths.output_dir={path}: cannot create it ({e.strerror or e})") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.output_dir={path}: folder is not writable; choose another paths.output_dir")
    return path


def require(cfg: DictConfig, key: str, hint: str) -> str:
    """Return the string value of a required top-level option, or a one-line ConfigError."""
    value = OmegaConf.select(cfg, key)
    if value in (None, ""):
        raise ConfigError(f"option {key} is required for stage={cfg.stage.name}: {hint}")
    return str(value)


def print_config_tree(
    cfg: DictConfig,
    order: Sequence[str] = (
        "stage",
        "dataset",
        "model",
        "rsp",
        "head",
        "search",
        "macro",
        "train",
        "trainer",
        "logger",
        "callbacks",
        "paths",
    ),
) -> None:
    """Print the resolved config as a rich tree (one branch per group), on rank 0 only.

    DDP ranks that Lightning or torchrun start re-run the command, so without the check every rank
    would print the same tree.
    """
    if launch_rank() != 0:
        return
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def launch_rank() -> int:
    """This process's rank as the launcher set it in the environment (Lightning's order), 0 outside DDP."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def save_config_on_first_write(cfg: DictConfig, out: Path) -> None:
    """Save `<out>/config.yaml` just before the first artifact/checkpoint is written under `out`.

    Inputs are checked before anything is written, so a run refused for bad input leaves a
    previous run's folder byte-identical (a written config.yaml would replace that run's).
    """
    text = OmegaConf.to_yaml(cfg, resolve=True)  # resolved now: later edits of cfg do not leak in

    def write() -> None:
        atomic_write_text(out / "config.yaml", text)

    before_first_write(out, write)


def flush_config(out: Path, write: bool) -> None:
    """End of a run: write a still-pending config.yaml (`write`, the run succeeded) or drop it."""
    action = take_pending(out)
    if write and action is not None:
        action()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) through Lightning."""
    import pytorch_lightning as pl  # here, not at the top: the CLI imports this module before any stage runs

    pl.seed_everything(int(seed), workers=True, verbose=False)
