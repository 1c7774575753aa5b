"""DARTS second-order (unrolled) architecture gradient (Liu et al. 2019, Eq. 7-8)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _grads(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> list[torch.Tensor]:
    """d loss / d params, zeros for params the loss does not depend on."""
    gs = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


@torch.no_grad()
def _axpy(params: Sequence[nn.Parameter], scale: float, vecs: Sequence[torch.Tensor]) -> None:
    for p, v in zip(params, vecs):
        p.add_(v, alpha=scale)


def unrolled_arch_grads(
    net: nn.Module,
    loss_fn: LossFn,
    weights: Sequence[nn.Parameter],
    arch: Sequence[nn.Parameter],
    weight_batch: Batch,
    arch_batch: Batch,
    xi: float,
    weight_decay: float = 0.0,
    r: float = 0.01,
    fp32: bool = True,
    arch_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Return (L_val(w', a), grad_a L_val(w', a) - xi * Hessian-vector term) with w' = w - xi * grad_w L_train.

    The virtual step is plain SGD with weight decay (no momentum, a documented
    simplification); the Hessian-vector product uses DARTS' central finite difference
    with eps = r / ||grad_w' L_val||. The weights are restored before returning.
    Always computed in fp32 with autocast off: under bf16 the finite difference
    (g+ - g-) / 2eps is rounding noise. The parameters must be fp32 (`check_trainer`).
    `fp32=False` leaves the caller's autocast and batch dtypes as they are (a test shows why not).
    `arch_forward` (default: `net`) runs the forward on the arch batch at w' (stage 2 scores its path weights).
    """
    device = weight_batch[0].device.type
    with torch.autocast(device_type=device, enabled=False) if fp32 else contextlib.nullcontext():
        (xw, yw), (xa, ya) = (_fp32(weight_batch), _fp32(arch_batch)) if fp32 else (weight_batch, arch_batch)
        backup = [w.detach().clone() for w in weights]
        g_train = _grads(loss_fn(net(xw), yw), weights)
        _axpy(weights, -xi, [g + weight_decay * w.detach() for g, w in zip(g_train, weights)])  # w' (virtual step)
        loss_val = loss_fn((arch_forward or net)(xa), ya)
        grads = _grads(loss_val, [*arch, *weights])
        d_arch, d_w = grads[: len(arch)], grads[len(arch) :]
        _restore(weights, backup)
        norm = torch.sqrt(sum((d.float() ** 2).sum() for d in d_w))
        eps = r / max(float(norm), 1e-12)
        _axpy(weights, eps, d_w)  # w+ = w + eps * d_w
        g_plus = _grads(loss_fn(net(xw), yw), arch)
        _axpy(weights, -2 * eps, d_w)  # w- = w - eps * d_w
        g_minus = _grads(loss_fn(net(xw), yw), arch)
        _restore(weights, backup)
        hvp = [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]
        return loss_val.detach(), [da - xi * h for da, h in zip(d_arch, hvp)]


def _fp32(batch: Batch) -> Batch:
    """Half-precision images as fp32 (fp32/fp64 and labels unchanged)."""
    x, y = batch
    return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x), y


@torch.no_grad()
def _restore(params: Sequence[nn.Parameter], backup: Sequence[torch.Tensor]) -> None:
    for p, b in zip(params, backup):
        p.copy_(b)
