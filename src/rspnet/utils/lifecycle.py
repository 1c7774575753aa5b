"""The run lifecycle: stop signals, the run identity in checkpoints, and what `ckpt_path` resumes.

* SIGTERM / SIGINT end a run with `StoppedError` (the CLI exits 128 + signum with one line). Inside
  a fit, Lightning's own SIGTERM handling stops at the end of the current batch; anywhere else the
  signal stops the run at once. Artifacts a run writes before it completes are marked incomplete
  (`"complete": false` in genotype.json / macro.json; result files are written only at the end).
* The run identity is a hash of the composed config minus the keys that may change on resume
  (`VOLATILE`); every checkpoint holds it (`RUN_KEY`), so a resume from another run's checkpoint
  or a fresh run into an old run's folder is one error naming both (docs/design.md "Run lifecycle").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from rspnet.errors import ArtifactError, ConfigError, StoppedError
from rspnet.utils.io import file_sha256

log = logging.getLogger(__name__)

RUN_KEY = "rspnet_run"  # top-level checkpoint key: {"id": ..., "config": <identity config as JSON>}
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# top-level keys that may change between a run and its resume: where it writes, how it is resumed,
# logged, printed, threaded, checkpointed; the eval split and predict/inference options of later stages
VOLATILE = ("ckpt_path", "ckpt", "split", "paths", "print_config", "threads", "logger", "callbacks", "checkpoint")
VOLATILE += ("hydra", "predict", "extra_loggers", "tags")
VOLATILE += ("study",)  # the study phases' folders (conf/study): the artifacts they resolve to count by content
# trainer keys that change the optimisation (all others are hardware, budgets, limits or logging)
TRAINER_KEYS = ("precision", "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")
# nested keys: where the data lives and how it is loaded; the held-out slice (a resume keeps the checkpoint's)
NESTED_VOLATILE = ("dataset.root", "dataset.num_workers", "dataset.pin_memory")
NESTED_VOLATILE += ("train.holdout_fraction", "train.holdout_seed", "train.holdout_sequences")
ARTIFACT_KEYS = ("genotype", "macro_arch")  # input files: identified by their content, not their path

_state: dict[str, Any] = {"depth": 0, "signum": None, "previous": {}, "pid": None}


class Interrupted(BaseException):  # noqa: N818 - a BaseException: `except Exception` blocks must not swallow it
    """Raised by the signal handler where no Trainer handles the signal (outside a fit, or SIGINT)."""


def _handler(signum: int, frame: Any) -> None:
    """Record the first stop signal; stop at once unless a Trainer wrapped this handler (it stops at batch end).

    A forked child (a DataLoader or multiprocessing-pool worker) inherits the handler: there the signal keeps
    its default meaning (the pool's terminate() ends the worker quietly).
    """
    if os.getpid() != _state["pid"]:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _state["signum"] is None:
        _state["signum"] = signum
    if signal.getsignal(signum) is _handler:
        raise Interrupted(signum)
    # called from Lightning's composed SIGTERM handler: it set `received_sigterm` and ends the fit
    # with SIGTERMException after the current batch


@contextmanager
def stop_on_signals(out: Path) -> Iterator[None]:
    """Turn SIGTERM/SIGINT during the block into one `StoppedError` naming the newest checkpoint under `out`.

    Re-entrant (the pipeline runs its stages inside): only the outermost block installs the handlers.
    A signal always ends in a StoppedError, also when the stage finished after it (a signalled run
    never exits 0); whether its artifacts are complete is written in them.
    """
    outermost = _state["depth"] == 0
    if outermost:
        _state["signum"], _state["pid"] = None, os.getpid()
        _state["previous"] = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, _handler)
    _state["depth"] += 1
    try:
        yield
    except StoppedError:
        raise
    except BaseException as e:  # noqa: BLE001 - SIGTERMException is a SystemExit, Interrupted a BaseException
        if _state["signum"] is None:
            raise
        raise StoppedError(stopped_message(_state["signum"], out), _state["signum"]) from e
    else:
        if _state["signum"] is not None:
            raise StoppedError(stopped_message(_state["signum"], out), _state["signum"])
    finally:
        _state["depth"] -= 1
        if outermost:
            for s, previous in _state["previous"].items():
                signal.signal(s, previous)


def stopped_message(signum: int, out: Path) -> str:
    """'stopped by SIGTERM after checkpoint X; ...' for a stopped run writing under `out`."""
    name = signal.Signals(signum).name
    ckpt = newest_checkpoint(out)
    if ckpt is None:
        return f"stopped by {name} before any checkpoint was written in {out}; run the same command to start over"
    return f"stopped by {name} after checkpoint {ckpt}; resume with the same command and ckpt_path=last"


# -- run identity ------------------------------------------------------------------------------
def artifact_digest(value: Any) -> Any:
    """An input artifact by content (`sha256:...`) when it is a file, else the value as given (a shipped name)."""
    if value is None or not Path(str(value)).is_file():
        return value
    return "sha256:" + file_sha256(Path(str(value)))[:16]


def identity_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of `cfg` that defines a run: everything but `VOLATILE` keys (docs/design.md "Run lifecycle")."""
    ident = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(ident, dict)
    for key in VOLATILE:
        ident.pop(key, None)
    ident["stage"] = {"name": str(cfg.stage.name)}
    ident["trainer"] = {k: v for k, v in (ident.get("trainer") or {}).items() if k in TRAINER_KEYS}
    for dotted in NESTED_VOLATILE:
        group, key = dotted.split(".")
        if isinstance(ident.get(group), dict):
            ident[group].pop(key, None)
    for key in ARTIFACT_KEYS:
        ident[key] = artifact_digest(ident.get(key))
    return ident


def run_id(ident: dict[str, Any]) -> str:
    """A short hash of an identity config."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


class RunIdentity(pl.Callback):
    """Stores the run identity in every checkpoint (`checkpoint["rspnet_run"]`)."""

    def __init__(self, cfg: DictConfig) -> None:
        ident = identity_config(cfg)
        self.record = {"id": run_id(ident), "config": json.dumps(ident, sort_keys=True, default=str)}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[RUN_KEY] = dict(self.record)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    return {k: v for key, value in d.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def differences(mine: dict[str, Any], theirs: dict[str, Any], limit: int = 4) -> str:
    """The keys whose values differ, `key=theirs (this run: mine)`, the first `limit` of them."""
    a, b = _flat(mine), _flat(theirs)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = [f"{k}={b.get(k)!r} (this run: {a.get(k)!r})" for k in keys[:limit]]
    return ", ".join(shown) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def stored_identity(path: Path) -> dict[str, Any] | None:
    """The run identity a checkpoint holds (None: written before rspnet stored one)."""
    try:  # mmap: only the small identity entry is read, not the weights
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors come in many types
        first = (str(e).splitlines() or ["empty or truncated file"])[0][:200]
        raise ArtifactError(f"{path}: cannot read checkpoint ({type(e).__name__}: {first})") from e
    record = ckpt.get(RUN_KEY) if isinstance(ckpt, dict) else None
    return record if isinstance(record, dict) and "id" in record else None


def other_run(path: Path, cfg: DictConfig) -> str | None:
    """A description of how `path`'s run differs from `cfg`'s, or None when it is the same run (or unknown)."""
    record = stored_identity(path)
    if record is None:
        log.warning("%s holds no run identity (written by an older rspnet); taking it as this run's", path)
        return None
    mine = identity_config(cfg)
    if record["id"] == run_id(mine):
        return None
    try:
        theirs = json.loads(record.get("config") or "{}")
    except json.JSONDecodeError:
        theirs = {}
    return f"run {record['id']}, this run is {run_id(mine)}; differs in {differences(mine, theirs) or 'its config'}"


# -- checkpoints of a run ----------------------------------------------------------------------
def last_checkpoints(cfg: DictConfig, out: Path) -> list[pl.Callback]:
    """`out/checkpoints/last.ckpt` (a real file, replaced atomically through AtomicCheckpointIO) after every
    epoch and, with `checkpoint.every_n_train_steps=N`, every N optimizer steps too; plus the run identity.

    No version counter: a rerun replaces last.ckpt, never writes last-v1.ckpt beside it.
    """
    common = {"dirpath": str(out / "checkpoints"), "filename": "last", "monitor": None, "save_top_k": 1}
    common |= {"auto_insert_metric_name": False, "enable_version_counter": False}
    callbacks: list[pl.Callback] = [ModelCheckpoint(**common, every_n_epochs=1, save_on_train_epoch_end=True)]
    steps = (cfg.get("checkpoint") or {}).get("every_n_train_steps")
    if steps:
        callbacks.append(ModelCheckpoint(**common, every_n_train_steps=int(steps)))
    return [*callbacks, RunIdentity(cfg)]


# checkpoint.* keys refused: rspnet sets where and the metric that picks the best (train.select), and last.ckpt;
# a best checkpoint saved between validations would pair one epoch's score with later weights
REFUSED_CHECKPOINT_KEYS = ("dirpath", "monitor", "mode", "save_last", "train_time_interval")


def best_checkpoint(cfg: DictConfig, out: Path, monitor: str) -> ModelCheckpoint:
    """`out/checkpoints/best-*.ckpt`: the `checkpoint` group (a ModelCheckpoint config) on max `monitor`
    (the selection split's mIoU, `select/miou`).

    `checkpoint.every_n_train_steps` is last.ckpt's (`last_checkpoints`), which has its own callback
    because Lightning >= 2.5 rewrites `save_last` only in epochs where top-k saved.
    """
    spec = cfg.get("checkpoint")
    if not isinstance(spec, DictConfig) or not spec.get("_target_"):
        raise ConfigError("checkpoint: not a ModelCheckpoint config; choose checkpoint=default (conf/checkpoint/)")
    given = [k for k in REFUSED_CHECKPOINT_KEYS if spec.get(k) is not None]
    if given or spec.get("filename") == "last":
        key = f"checkpoint.{given[0]}" if given else "checkpoint.filename=last"
        raise ConfigError(
            f"{key}: set by rspnet (checkpoints/ of the run dir, best = max select/miou, the selection split "
            "chosen by train.select, last.ckpt always written); remove it"
        )
    kwargs = {k: v for k, v in spec.items() if k != "every_n_train_steps"}  # last.ckpt's (last_checkpoints)
    kwargs |= {"dirpath": str(out / "checkpoints"), "monitor": monitor, "mode": "max"}
    try:
        callback = instantiate(kwargs, _convert_="all")
    except (InstantiationException, TypeError, MisconfigurationException) as e:
        raise ConfigError(f"checkpoint ({spec._target_}): {str(e).splitlines()[0]}; check the checkpoint.* keys") from e
    if not isinstance(callback, ModelCheckpoint):
        raise ConfigError(f"checkpoint._target_={spec._target_}: not a ModelCheckpoint")
    return callback


def checkpoint_candidates(out: Path) -> list[Path]:
    """The checkpoints a run in `out` resumes from: checkpoints/last.ckpt and Lightning's SLURM `hpc_ckpt_*.ckpt`."""
    found = [out / "checkpoints" / "last.ckpt", *sorted(out.glob("hpc_ckpt_*.ckpt"))]
    return [p for p in found if p.is_file()]


def newest_checkpoint(out: Path) -> Path | None:
    """The newest resumable checkpoint under `out` (by modification time), or None."""
    found = checkpoint_candidates(out)
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def resolve_ckpt_path(cfg: DictConfig, out: Path) -> str | None:
    """The checkpoint a fit resumes from, checked to belong to this run.

    `ckpt_path=last`: this run's newest checkpoint under `out`, or None (start fresh) when there is
    none; a path: that file. Unset: a fresh run, refused when `out` holds another run's checkpoints.
    """
    value = cfg.get("ckpt_path")
    if value in (None, "", False):
        old = newest_checkpoint(out)
        diff = other_run(old, cfg) if old is not None else None
        if diff:
            raise ConfigError(
                f"paths.output_dir={out} holds checkpoints of another run ({old}: {diff}); choose a new "
                "paths.output_dir, or delete its checkpoints to start over there"
            )
        return None
    if str(value) == "last":
        path = newest_checkpoint(out)
        if path is None:
            log.info("ckpt_path=last: no checkpoint in %s yet; starting fresh", out)
            return None
    else:
        path = Path(str(value))
        if not path.is_file():
            raise ConfigError(f"ckpt_path={value}: file not found")
    diff = other_run(path, cfg)
    if diff:
        raise ConfigError(
            f"ckpt_path={value}: {path} is a checkpoint of another run ({diff}); resume with that run's config, "
            "or start this one fresh in a new paths.output_dir"
        )
    return str(path)
