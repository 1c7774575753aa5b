"""One bi-level (DARTS) search step, outside Lightning: the `Architect`.

A plain object over a supernet (`arch_parameters()`, `weight_parameters()`, `forward(x) -> logits`),
a loss and the two optimisers (DARTS' `Architect`). Per step: (1) an architecture step on the arch
batch, first-order or DARTS' unrolled gradient (`second_order`, search/unrolled.py, in fp32);
(2) a weight step on the weight batch with gradient-norm clipping. An optional `penalty()` (a
term in the architecture parameters alone: a resource target, models/cost.py) is added to the
arch loss. `SearchModule.training_step`
and the benchmarks both run it: the module passes `backward=self.manual_backward`, its DDP-aware
non-finite guard and clips in its own hook (after AMP unscaling); plain code keeps the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ConfigError, NonFiniteError
from rspnet.search.unrolled import unrolled_arch_grads

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (value, what it is) -> True to go on; False to skip the step (or raise)
Guard = Callable[[torch.Tensor, str], bool]


def plain_backward(loss: torch.Tensor) -> None:
    """`loss.backward()`: the backward of plain (non-Lightning) code."""
    loss.backward()


def raise_nonfinite(value: torch.Tensor, which: str) -> bool:
    """True if `value` is finite, else a NonFiniteError naming it: the guard of plain code."""
    if bool(torch.isfinite(value).all()):
        return True
    raise NonFiniteError(f"{which} is {value.float().sum().item()}; lower search.weight_lr / search.arch_lr")


def build_optimizers(weights: list[nn.Parameter], arch: list[nn.Parameter], s: DictConfig) -> tuple[Any, Any]:
    """(weight SGD, arch SGD or Adam) from the `search` config group."""
    w_opt = torch.optim.SGD(
        weights, lr=float(s.weight_lr), momentum=float(s.weight_momentum), weight_decay=float(s.weight_wd)
    )
    if s.arch_optim == "sgd":
        a_opt = torch.optim.SGD(
            arch, lr=float(s.arch_lr), momentum=float(s.get("arch_momentum", 0.0)), weight_decay=float(s.arch_wd)
        )
    elif s.arch_optim == "adam":
        a_opt = torch.optim.Adam(
            arch, lr=float(s.arch_adam_lr), betas=tuple(s.arch_adam_betas), weight_decay=float(s.arch_wd)
        )
    else:
        raise ConfigError(f"search.arch_optim={s.arch_optim} is unknown; use sgd or adam")
    return w_opt, a_opt


def _group_params(opt: Any) -> list[nn.Parameter]:
    """The parameters of `opt` in its own order (a LightningOptimizer forwards `param_groups`)."""
    return [p for group in opt.param_groups for p in group["params"]]


class Architect:
    """The bi-level alternation over `net`: `arch_step`, `weight_step`, or both with `step`.

    `w_opt`/`a_opt` hold exactly the weight and the architecture parameters; the virtual step of
    second order uses the weight optimiser's current lr and weight decay (DARTS' xi). Each step
    returns its detached loss, or None when `finite` chose to skip it.
    """

    def __init__(
        self,
        net: Callable[[torch.Tensor], torch.Tensor],
        loss: LossFn,
        w_opt: Any,
        a_opt: Any,
        *,
        second_order: bool = False,
        grad_clip: float | None = None,
        backward: Callable[[torch.Tensor], None] = plain_backward,
        finite: Guard = raise_nonfinite,
        check_arch_grads: bool = True,
        clip_before_step: bool = True,
        penalty: Callable[[], torch.Tensor] | None = None,
        arch_grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
    ) -> None:
        self.net, self.loss, self.w_opt, self.a_opt = net, loss, w_opt, a_opt
        self.weights, self.arch = _group_params(w_opt), _group_params(a_opt)
        self.second_order, self.grad_clip = bool(second_order), grad_clip
        self.backward, self.finite = backward, finite
        # under fp16 AMP inf gradients are routine: the GradScaler skips those steps itself
        self.check_arch_grads = check_arch_grads
        # False when the caller clips in its own hook (Lightning: after the AMP unscale)
        self.clip_before_step = clip_before_step
        # a term of the arch loss that depends on the arch parameters only (a resource target, models/cost.py)
        self.penalty = penalty
        # called with the arch parameters once their gradients are set, before the step (the grad null)
        self.arch_grad_hook = arch_grad_hook

    def step(
        self, weight_batch: Batch, arch_batch: Batch, update_arch: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(1) arch step on `arch_batch` (unless `update_arch` is False: warm-up), (2) weight step; both losses."""
        arch_loss = self.arch_step(arch_batch, weight_batch) if update_arch else None
        return arch_loss, self.weight_step(weight_batch)

    def arch_step(
        self,
        batch: Batch,
        weight_batch: Batch | None = None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """One architecture update on `batch` (second order also needs `weight_batch`: the virtual step); the loss
        is of `forward(x)` (default the net; second order: at w'), so a caller scoring that forward passes its own."""
        self.a_opt.zero_grad()
        x, y = batch
        if self.second_order:
            if weight_batch is None:
                raise ValueError("a second-order arch step needs the weight batch for its virtual weight step")
            group = self.w_opt.param_groups[0]
            loss, grads = unrolled_arch_grads(
                self.net,
                self.loss,
                self.weights,
                self.arch,
                weight_batch,
                batch,
                group["lr"],
                float(group["weight_decay"]),
                arch_forward=forward,
            )
            if self.penalty is not None:
                extra = self.penalty()
                loss = loss + extra.detach()
                more = torch.autograd.grad(extra, self.arch, allow_unused=True)
                grads = [g if m is None else g + m for g, m in zip(grads, more)]
            if not self.finite(loss, "arch loss"):
                return None
            for p, g in zip(self.arch, grads):
                p.grad = g
        else:
            loss = self.loss((forward or self.net)(x), y)
            if self.penalty is not None:
                loss = loss + self.penalty()
            if not self.finite(loss, "arch loss"):
                return None
            self.backward(loss)
        if self.arch_grad_hook is not None:
            self.arch_grad_hook(self.arch)
        if self.check_arch_grads and not self.finite(abs_sum(p.grad for p in self.arch), "arch gradient"):
            return None
        before = [p.detach().clone() for p in self.arch]
        self.a_opt.step()
        total = abs_sum(self.arch)
        if not torch.isfinite(total):
            # roll back first, so a skipped step or the saved checkpoint holds the last finite alpha/beta
            with torch.no_grad():
                for p, b in zip(self.arch, before):
                    p.copy_(b)
            self.finite(total, "sum |alpha/beta| after the arch step")
            return None
        return loss.detach()

    def weight_step(self, batch: Batch) -> torch.Tensor | None:
        """One weight update on `batch`, gradient norm clipped to `grad_clip`."""
        self.w_opt.zero_grad()
        x, y = batch
        loss = self.loss(self.net(x), y)
        if not self.finite(loss, "weight loss"):
            return None
        self.backward(loss)
        if self.clip_before_step:
            self.clip_weights()
        self.w_opt.step()
        return loss.detach()

    def clip_weights(self) -> None:
        """Clip the weight gradients' total norm to `grad_clip` (no-op when unset or 0)."""
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.weights, float(self.grad_clip))


def abs_sum(tensors: Iterable[torch.Tensor | None]) -> torch.Tensor:
    """Sum of |values| over `tensors` (None skipped): NaN/inf iff any value is."""
    sums = [t.detach().float().abs().sum() for t in tensors if t is not None]
    return torch.stack(sums).sum() if sums else torch.zeros(())
