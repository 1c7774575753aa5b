"""DDP helpers: is_distributed, one-line errors of spawned ranks, the same-architecture-on-every-rank check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
