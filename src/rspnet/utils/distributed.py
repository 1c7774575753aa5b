"""DDP helpers: rank queries and the check that every rank holds the same architecture."""

from __future__ import annotations

import torch
import torch.distributed as dist

from rspnet.errors import RSPNetError


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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
