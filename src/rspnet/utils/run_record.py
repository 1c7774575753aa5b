"""Every run's accounting and done marker: `paths.output_dir/done.json`, written by `run_stage` at success.

One resume rule for single runs, the pipeline and Hydra multirun phases alike (docs/design.md
"Run lifecycle"): `ckpt_path=last` skips a run whose folder holds a done marker of the same run
(same identity: the run identity of the checkpoints plus the eval split and the input checkpoint's
content) and returns its recorded result; a killed run goes on from its newest checkpoint; a marker
of another run is one error naming both. A fresh run (no `ckpt_path`) drops an old marker just
before its first write, so a folder never shows a finished run that is not the one in it.

    {"format": "rspnet.done/1", "stage": "train", "run_id": "...", "wall_s": 61.2, "cpu_s": 118.0,
     "started": "...", "finished": "...", "result": {...the stage's result...}, "identity": {...}}

`identity` is the config the run id hashes: a marker of another run is refused naming the keys that
differ (markers written before it was recorded name only the two ids).

`cpu_s` is user + system time of this process and of its children that ended (DataLoader workers).
Both count every attempt of a run resumed with `ckpt_path=last` (`attempts`): an attempt that stops with
a checkpoint to resume from (a signal, an error) keeps its time in `<out>/.clock.json`, which the
resumed attempt adds and drops. An attempt killed by SIGKILL writes nothing, so its time is not counted.

`hold(out)`: one process at a time runs in a folder. `run_stage` holds an exclusive lock on
`<out>/.lock` (flock, released by the kernel when the process dies, so a killed run never leaves a
stale lock) while the run goes; a second process started on the same folder (a phase launched twice,
a requeued SLURM job whose first instance still runs) stops with one error naming the holder, before
it reads a checkpoint the first one is writing. Only launch rank 0 locks (DDP ranks share the folder).
On a cluster file system, flock must be supported (NFSv4 and most Lustre mounts; `-o flock`).
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from rspnet.errors import BusyError, ConfigError
from rspnet.utils.io import atomic_write_json, before_first_write, json_safe, read_json
from rspnet.utils.lifecycle import artifact_digest, differences, identity_config, run_id

log = logging.getLogger(__name__)

DONE = "done.json"
CLOCK = ".clock.json"  # the time of a run's interrupted attempts, until its done.json counts it
LOCK = ".lock"
FORMAT = "rspnet.done/1"


def done_identity(cfg: DictConfig) -> dict:
    """What a done marker is keyed by: the checkpoints' identity + the eval split + the input checkpoint."""
    ident = identity_config(cfg)
    ident["split"] = str(cfg.get("split"))
    ident["ckpt"] = artifact_digest(cfg.get("ckpt"))
    return ident


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """Wall and CPU clocks of one run, started when the run starts."""

    out: Path
    stage: str
    identity: dict  # what the run id hashes (done_identity)
    wall0: float = field(default_factory=time.perf_counter)
    cpu0: float = field(default_factory=_cpu_seconds)
    started: str = field(default_factory=_now)
    prior: dict = field(default_factory=lambda: {"wall_s": 0.0, "cpu_s": 0.0, "attempts": 0})  # earlier attempts

    def _totals(self) -> dict:
        """Wall and CPU seconds of every attempt so far, this one included, and how many attempts."""
        return {
            "wall_s": round(float(self.prior["wall_s"]) + time.perf_counter() - self.wall0, 2),
            "cpu_s": round(float(self.prior["cpu_s"]) + _cpu_seconds() - self.cpu0, 2),
            "attempts": int(self.prior["attempts"]) + 1,
        }

    def write(self, result: dict) -> dict:
        """Write the done marker and return it (every DDP rank writes it atomically, as a complete file)."""
        totals = self._totals()
        record = {
            "format": FORMAT,
            "stage": self.stage,
            "run_id": run_id(self.identity),
            "wall_s": totals["wall_s"],
            "cpu_s": totals["cpu_s"],
            "attempts": totals["attempts"],
            "started": self.started,
            "finished": _now(),
            "result": json_safe(result),
            "identity": json_safe(self.identity),
        }
        atomic_write_json(self.out / DONE, record)
        (self.out / CLOCK).unlink(missing_ok=True)
        return record

    def interrupted(self) -> None:
        """This attempt stopped with a checkpoint to resume from: keep its time for the resumed attempt."""
        try:
            atomic_write_json(self.out / CLOCK, {"run_id": run_id(self.identity), **self._totals()})
        except OSError as e:  # accounting only: never mask the error that stopped the run
            log.warning("could not record the interrupted attempt's time in %s: %s", self.out / CLOCK, e)


def finished_result(cfg: DictConfig, out: Path) -> dict | None:
    """With `ckpt_path=last`: the recorded result of this run if it finished before, else None.

    Without it (a fresh run), an older marker is dropped just before the run's first write.
    """
    marker = out / DONE
    if str(cfg.get("ckpt_path")) != "last":
        before_first_write(out, lambda: marker.unlink(missing_ok=True), name="done-marker")
        return None
    if not marker.is_file():
        return None
    record = read_json(marker, "done marker")
    ident = done_identity(cfg)
    mine = run_id(ident)
    if record.get("run_id") != mine:
        theirs = record.get("identity")
        diff = f"; differs in {differences(ident, theirs)}" if isinstance(theirs, dict) else ""
        raise ConfigError(
            f"paths.output_dir={out} holds a finished run {record.get('run_id')} ({marker}), this run is {mine}"
            f"{diff}; choose a new paths.output_dir, or delete that folder to run there"
        )
    log.info("ckpt_path=last: this run finished before (%s); skipping it", marker)
    return dict(record.get("result") or {})


def start(cfg: DictConfig, out: Path) -> RunRecord:
    """Start the clocks of a run of `cfg`; with `ckpt_path=last`, after the time of its earlier attempts."""
    record = RunRecord(out=out, stage=str(cfg.stage.name), identity=done_identity(cfg))
    clock = out / CLOCK
    if str(cfg.get("ckpt_path")) == "last" and clock.is_file():
        try:
            prior = json.loads(clock.read_text())
        except (OSError, ValueError):
            prior = None  # a clock that cannot be read counts nothing (the run goes on)
        if isinstance(prior, dict) and prior.get("run_id") == run_id(record.identity):
            record.prior = {k: prior.get(k) or 0 for k in ("wall_s", "cpu_s", "attempts")}
    return record


def _holder(fd: int) -> str:
    """Who holds the lock (the JSON its holder wrote), as words."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"process {info.get('pid')} on {info.get('host')} (since {info.get('since')})"


def running(out: Path) -> bool:
    """Whether a process holds the run-folder lock of `out` now (a probe: a lock it takes is dropped at once)."""
    try:
        fd = os.open(out / LOCK, os.O_RDONLY)
    except OSError:
        return False  # no lock file: nothing runs there (or never did with the lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EACCES)
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return False


def _lock(out: Path, path: Path) -> int | None:
    """The descriptor of `path` with its exclusive flock held; None where the file system has no flock."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"paths.output_dir={out}: cannot create {path.name} ({e.strerror or e})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise BusyError(
                    f"paths.output_dir={out} is in use: {holder} is running this run ({path}); wait for it to "
                    "finish (a re-run with ckpt_path=last then skips or resumes it), or use another paths.output_dir"
                ) from None
            log.warning("%s: no flock on this file system (%s); running without the run-folder lock", path, e)
            path.unlink(missing_ok=True)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one


@contextmanager
def hold(out: Path) -> Iterator[None]:
    """Hold the exclusive lock of the run folder `out` (an existing folder) while the block runs (see the
    module doc); the lock file goes when the block ends. On a file system without flock the run goes on
    unlocked, with a warning."""
    from rspnet.utils.runtime import launch_rank

    if launch_rank() != 0:
        yield
        return
    path = out / LOCK
    fd = _lock(out, path)
    if fd is None:
        yield
        return
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
