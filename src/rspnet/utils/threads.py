"""Thread policy: torch's intra-/inter-op pools sized to the cores this process may use.

torch defaults to one OpenMP thread per core of the host. On a machine shared with other work
(or with the loader workers and DDP ranks of this very run) more runnable threads than cores
make OpenMP's spin-waiting barriers slow every op down by an order of magnitude, so the
default is this process's share instead (docs/design.md, "Thread policy"):

    intra-op threads = usable cores // ranks per node - loader workers, never below 1

where usable cores honour the CPU affinity mask and a cgroup CPU quota (v2 `cpu.max`,
v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), rounded down. `threads.intra_op` /
`threads.inter_op` override it; an `OMP_NUM_THREADS` set before the run is honoured too.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from omegaconf import DictConfig

from rspnet.errors import ConfigError

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_exported: str | None = None  # the OMP_NUM_THREADS value apply() exported (not a user's choice)


@dataclass(frozen=True)
class ThreadPlan:
    """The chosen pool sizes and the facts they were derived from."""

    intra_op: int
    inter_op: int
    cores: int
    workers: int
    ranks: int
    source: str  # "auto", "threads.intra_op" or "OMP_NUM_THREADS"

    def line(self) -> str:
        """The one log line every stage starts with."""
        return (
            f"threads: intra-op {self.intra_op}, inter-op {self.inter_op} ({self.source}; "
            f"{self.cores} usable core(s), {self.workers} loader worker(s), {self.ranks} rank(s) on this node)"
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    """quota / period in cores, or None when unlimited ("max", -1) or unreadable."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup ('' is the v2 entry)."""
    paths: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2].lstrip("/")
    return paths


def _dirs(base: Path, rel: str) -> list[Path]:
    """`base/rel` and its ancestors up to `base` (a parent's quota caps its children too)."""
    parts = Path(rel).parts if rel else ()
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota in cores (e.g. 1.5) from cgroup v2 or v1 files under `root`; None = unlimited."""
    own = _own_cgroups(proc_cgroup)
    limits: list[float] = []
    for d in _dirs(root, own.get("", "")):  # v2: "<quota> <period>" or "max <period>"
        fields = (_read(d / "cpu.max") or "").split()
        limits.append(_ratio(*fields) if len(fields) == 2 else None)
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1: quota -1 = unlimited
        for d in _dirs(root / name, own.get("cpu", "")):
            limits.append(_ratio(_read(d / "cpu.cfs_quota_us") or "", _read(d / "cpu.cfs_period_us") or ""))
    found = [v for v in limits if v is not None]
    return min(found) if found else None


def usable_cores(affinity: int | None = None, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Cores this process may run on: the affinity mask capped by the cgroup quota (floor, >= 1)."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root, proc_cgroup)
    cores = affinity if limit is None else min(affinity, math.floor(limit))
    return max(1, cores)


def ranks_per_node(trainer: Any = None) -> int:
    """Processes of this run on this host: LOCAL_WORLD_SIZE, else the DDP devices of `cfg.trainer`."""
    env = os.environ.get("LOCAL_WORLD_SIZE")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    if trainer is None or "ddp" not in str(trainer.get("strategy", "")):
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, str):  # "2", or "auto" / "-1" (unknown here: assume one)
        return int(devices) if devices.isdigit() and int(devices) > 0 else 1
    if isinstance(devices, int):
        return max(1, devices)
    return max(1, len(devices))  # a list of device ids


def _positive(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value} must be a whole number >= 1, or null for the automatic choice")
    return value


def _env_threads() -> int | None:
    """OMP_NUM_THREADS as the user set it (a positive integer), ignoring the value apply() exported."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 and value != _exported else None


def plan(
    cores: int,
    workers: int = 0,
    ranks: int = 1,
    intra_op: int | None = None,
    inter_op: int | None = None,
    env: int | None = None,
) -> ThreadPlan:
    """The pool sizes for `cores` usable cores shared by `ranks` processes, each with `workers` loaders."""
    share = max(1, cores // max(1, ranks) - max(0, workers))
    intra, source = (intra_op, "threads.intra_op") if intra_op else (env, "OMP_NUM_THREADS") if env else (share, "auto")
    return ThreadPlan(
        intra_op=intra, inter_op=inter_op or intra, cores=cores, workers=workers, ranks=ranks, source=source
    )


def plan_for(cfg: DictConfig, cores: int | None = None) -> ThreadPlan:
    """The plan for a composed config (`threads.*`, `dataset.num_workers`, `trainer`)."""
    threads = cfg.get("threads") or {}
    dataset = cfg.get("dataset") or {}
    return plan(
        cores or usable_cores(),
        int(dataset.get("num_workers", 0) or 0),
        ranks_per_node(cfg.get("trainer")),
        _positive("threads.intra_op", threads.get("intra_op")),
        _positive("threads.inter_op", threads.get("inter_op")),
        _env_threads(),
    )


def apply(cfg: DictConfig) -> ThreadPlan:
    """Size torch's pools for `cfg`, export OMP_NUM_THREADS for child ranks, log the choice."""
    global _exported
    p = plan_for(cfg)
    torch.set_num_threads(p.intra_op)
    if torch.get_num_interop_threads() != p.inter_op:
        try:
            torch.set_num_interop_threads(p.inter_op)
        except RuntimeError:  # torch allows it once, before any inter-op work; a later stage keeps the first size
            log.info("threads: inter-op pool already started with %d threads; kept", torch.get_num_interop_threads())
    if _env_threads() is None:  # DDP ranks (Lightning re-launch or spawn) start from this value, not the host's cores
        _exported = os.environ["OMP_NUM_THREADS"] = str(p.intra_op)
    log.info(p.line())
    return p


def limit_opencv_threads() -> None:
    """OpenCV's pool to one thread, called in the process that is about to fork loader workers.

    albumentations' OpenCV keeps its own pthreads pool (one thread per core). Resizing that pool in a
    forked child whose parent had it running deadlocks the child (in `pthread_cond_destroy` on the
    parent's copied pool state), so the parent sizes it before the fork and the children inherit one
    thread. A no-op when OpenCV is not loaded or already runs one thread.
    """
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def loader_workers(workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for `workers` loader processes under the thread policy: one thread per
    worker (`worker_init`), and OpenCV's pool sized here, in the process about to fork them."""
    if workers > 0:
        limit_opencv_threads()
    return {"num_workers": workers, "worker_init_fn": worker_init}


def worker_init(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: one thread per worker (torch, OpenMP/MKL), then Lightning's seeding.

    OpenCV's pool is sized by the parent before it forks (`limit_opencv_threads`): sizing it here
    can deadlock the worker.
    """
    torch.set_num_threads(1)
    for name in THREAD_ENV:
        os.environ[name] = "1"
    if os.environ.get("PL_SEED_WORKERS") == "1":  # what Lightning adds when worker_init_fn is None
        pl_worker_init_function(worker_id)
