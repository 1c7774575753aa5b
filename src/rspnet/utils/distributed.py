"""DDP helpers: is_distributed, one-line errors of spawned ranks, the same-architecture-on-every-rank check,
and `ranks_fail_together`: a fault on one rank of a torchrun/SLURM/`ddp` run ends every rank."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

import rspnet.errors as errors
from rspnet.errors import RSPNetError


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def assert_same_across_ranks(tensor: torch.Tensor, name: str, atol: float = 1e-6) -> None:
    """Raise on every rank if `tensor` differs between ranks; a no-op outside DDP.

    Search nets call it on alpha/beta at epoch end: DDP all-reduces their gradients (they are
    registered parameters used in forward), so the ranks must agree; if they drift, a
    genotype derived on rank 0 would not be the one the other ranks trained.
    """
    if not is_distributed():
        return
    local = tensor.detach().float().contiguous()
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    # every rank sees the same gathered list, so all ranks raise together (no hang)
    for other, value in enumerate(gathered[1:], start=1):
        diff = (value - gathered[0]).abs().max().item()
        if not diff <= atol:
            raise RSPNetError(
                f"{name} differs between DDP rank 0 and rank {other} (max abs diff {diff:.3g}); "
                "the architecture gradient is not all-reduced — keep it a registered parameter "
                "used in forward and use first-order search (search.second_order=false)"
            )


def all_ranks_finite(value: torch.Tensor) -> bool:
    """True iff `value` is finite on every rank: one decision for all (a MIN all-reduce under DDP).

    A rank that stops on a NaN while another enters the gradient all-reduce of `manual_backward`
    would hang the run; with one shared flag every rank skips, or stops, together.
    """
    flag = torch.isfinite(value.detach()).all().to(torch.float32)
    if is_distributed():
        flag = flag.to(value.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def error_from_rank(error: BaseException) -> RSPNetError | None:
    """The RSPNetError a spawned DDP rank raised, rebuilt from torch's `ProcessRaisedException` text.

    `ddp_spawn` ranks report their exception to the parent as a traceback string; its last line
    is `rspnet.errors.<Class>: <message>`. None if `error` is not such a report.
    """
    lines = str(error).rstrip().splitlines()
    if type(error).__name__ != "ProcessRaisedException" or not lines:
        return None
    name, _, message = lines[-1].partition(": ")
    cls = getattr(errors, name.rsplit(".", 1)[-1], None) if name.startswith("rspnet.errors.") else None
    return cls(message) if isinstance(cls, type) and issubclass(cls, RSPNetError) else None


@contextmanager
def rank_errors() -> Iterator[None]:
    """Re-raise a spawned rank's RSPNetError as itself (one line), not as torch's traceback text."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only ProcessRaisedException reports are rewritten
        error = error_from_rank(e)
        if error is None:
            raise
        raise error from e


# -- one rank's fault ends every rank ---------------------------------------------------------
FAILED = "rspnet/failed"  # store key: JSON {"rank", "message", "code"} of the first rank that failed
SEEN = "rspnet/failure_seen"  # store counter: the other ranks that read FAILED
RELEASED = "rspnet/failure_released"  # store key: the failing rank is done with the store
POLL_S = 1.0  # how often each rank looks for a peer's failure
LINGER_S = 10.0  # how long the failing rank waits for the others to read its failure
_reporting = threading.Lock()  # one report per process: the main thread's or the watcher's


def _store() -> Any:
    """The default process group's key-value store (the rendezvous one); None outside a multi-rank run."""
    if not is_distributed():
        return None
    # private but long-standing: the public API has no getter for the default group's store
    getter = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return getter() if getter is not None else None
    except (RuntimeError, ValueError):
        return None


def _exit(code: int) -> NoReturn:
    """Flush the logs and leave now.

    `os._exit`, not `sys.exit`: interpreter teardown can block in the process group's destructor
    (NCCL waits for a collective that a peer will never join); the run's artifacts are atomic files.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _posted(store: Any) -> dict[str, Any] | None:
    """The failure a rank posted, None if none was (or the store cannot be reached)."""
    try:
        return json.loads(store.get(FAILED)) if store.check([FAILED]) else None
    except Exception:  # noqa: BLE001 - a store whose host exited: nothing more to learn from it
        return None


def _stop_for_peer(store: Any, failure: dict[str, Any]) -> NoReturn:
    """End this rank because another rank posted `failure`: one line, the same exit status."""
    print(
        f"rspnet: error: rank {dist.get_rank()} stopped: rank {failure['rank']} failed: {failure['message']}",
        file=sys.stderr,
        flush=True,
    )
    try:  # tell the failing rank, then let it go first: rank 0 hosts the store and takes it along
        store.add(SEEN, 1)
        store.wait([RELEASED], timedelta(seconds=LINGER_S))
    except Exception:  # noqa: BLE001 - the failing rank left already
        pass
    _exit(int(failure["code"]))


def _watch(stop: threading.Event, poll_s: float) -> None:
    """Watcher thread: end this rank as soon as another rank posts a failure.

    The main thread may sit in a collective that never returns (NCCL does not notice a peer
    that left) or still be computing; either way it would not learn of the failure in time.
    """
    while not stop.wait(poll_s):
        store = _store()
        failure = _posted(store) if store is not None else None
        if failure is None or failure["rank"] == dist.get_rank():
            continue  # nothing yet, or this rank's own failure, which the main thread reports
        if _reporting.acquire(blocking=False):  # else the main thread is reporting, and exits
            _stop_for_peer(store, failure)
        return


def _fail(error: BaseException, describe: Callable[[BaseException], tuple[str, int]]) -> NoReturn:
    """Post this rank's failure (unless another rank's came first), report it in one line and exit."""
    _reporting.acquire()  # if the watcher holds it, it is ending the process
    rank, world = dist.get_rank(), dist.get_world_size()
    message, code = describe(error)
    mine = {"rank": rank, "message": message, "code": code}
    store = _store()
    try:  # the first failure wins: a rank that fails *because* a peer left reports the peer's
        first = json.loads(store.compare_set(FAILED, "", json.dumps(mine)))
    except Exception:  # noqa: BLE001 - no store to tell: report this rank's own error
        first, store = mine, None
    if first["rank"] != rank:
        _stop_for_peer(store, first)
    if not isinstance(error, RSPNetError):  # a bug, not bad input: keep its traceback
        traceback.print_exception(error)
    print(f"rspnet: error: rank {rank} failed: {message}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + LINGER_S
    try:
        while store is not None and store.add(SEEN, 0) < world - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        if store is not None:
            store.set(RELEASED, "1")
    except Exception:  # noqa: BLE001 - the store's host is gone: nobody left to tell
        pass
    _exit(code)


@contextmanager
def ranks_fail_together(describe: Callable[[BaseException], tuple[str, int]], poll_s: float = POLL_S) -> Iterator[None]:
    """In a multi-rank run whose ranks are separate processes, a fault on any rank ends every rank.

    torchrun, SLURM tasks and Lightning's `ddp` start the ranks as independent processes; one
    that raises (a full disk under a rank-0-only write, a bug on rank 1) would leave the others
    waiting in a barrier or collective until the process-group timeout (30 min). Inside this
    block the failing rank posts `describe(error)` -> (message, exit status) to the process
    group's store, prints `rspnet: error: rank R failed: <message>` and exits with that status;
    a watcher thread on every other rank reads it within `poll_s` seconds and exits with the
    same status, printing `rspnet: error: rank Q stopped: rank R failed: <message>`. A rank that
    finishes waits in a barrier for the others, so none exits 0 while another fails on its last
    write. Outside a process group (one process, a `ddp_spawn` parent) exceptions pass through.
    """
    stop = threading.Event()
    threading.Thread(target=_watch, args=(stop, poll_s), name="rspnet-peer-watch", daemon=True).start()
    try:
        yield
        if is_distributed():
            dist.barrier()  # no rank exits 0 while another may still fail
    except BaseException as e:
        if not is_distributed():
            raise
        _fail(e, describe)
    finally:
        stop.set()
