"""The plain bi-level step (`Architect`) is the step SearchModule trains with, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from rspnet.errors import NonFiniteError
from rspnet.lit.search_module import SearchModule
from rspnet.search.bilevel import Architect, build_optimizers


class Quiet(SearchModule):
    def export_artifacts(self, out, final, arch=None) -> None:  # noqa: ANN001
        pass


@pytest.mark.parametrize("second_order", [False, True], ids=["first", "second"])
def test_plain_architect_steps_equal_the_lightning_search(
    make_cfg, tiny_net, tiny_loader, fit, second_order: bool
) -> None:
    torch.manual_seed(0)
    net = tiny_net()
    plain = copy.deepcopy(net)
    cfg = make_cfg("dataset.num_classes=3", f"search.second_order={second_order}", "search.grad_clip=0.05")
    fit(Quiet(net, cfg), tiny_loader(), tiny_loader(seed=1))  # 2 batches: arch step, weight step, twice

    w_opt, a_opt = build_optimizers(plain.weight_parameters(), plain.arch_parameters(), cfg.search)
    loss = lambda logits, y: F.cross_entropy(logits.float(), y, ignore_index=255)  # noqa: E731
    architect = Architect(plain, loss, w_opt, a_opt, second_order=second_order, grad_clip=cfg.search.grad_clip)
    for weight_batch, arch_batch in zip(tiny_loader(), tiny_loader(seed=1)):
        arch_loss, weight_loss = architect.step(tuple(weight_batch), tuple(arch_batch))
        assert arch_loss is not None and weight_loss is not None
    trained = dict(net.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.equal(p, trained[name]), name


def test_plain_architect_raises_on_a_nonfinite_loss(tiny_net) -> None:
    net = tiny_net()
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    a_opt = torch.optim.SGD(net.arch_parameters(), lr=0.1)
    architect = Architect(net, lambda logits, y: logits.sum() * float("nan"), w_opt, a_opt)
    alpha = net.alpha.detach().clone()
    with pytest.raises(NonFiniteError, match="arch loss is nan"):
        architect.arch_step((torch.randn(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long)))
    assert torch.equal(net.alpha, alpha)


def test_second_order_arch_step_needs_the_weight_batch(tiny_net) -> None:
    net = tiny_net()
    opts = torch.optim.SGD(net.weight_parameters(), lr=0.1), torch.optim.SGD(net.arch_parameters(), lr=0.1)
    architect = Architect(net, F.cross_entropy, *opts, second_order=True)
    with pytest.raises(ValueError, match="weight batch"):
        architect.arch_step((torch.randn(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long)))


@pytest.mark.parametrize("second_order", [False, True], ids=["first", "second"])
def test_arch_step_runs_the_given_forward_once_on_the_arch_batch(tiny_net, second_order: bool) -> None:
    """Stage 2 scores the path weights of the arch forward: it is handed over, not recognised by its input."""
    torch.manual_seed(0)
    net = tiny_net()
    twin = copy.deepcopy(net)
    arch_batch = (torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)))
    weight_batch = (torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)))
    seen: list[torch.Tensor] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return net(x)

    for model, fwd in ((net, forward), (twin, None)):
        opts = torch.optim.SGD(model.weight_parameters(), lr=0.1), torch.optim.SGD(model.arch_parameters(), lr=0.1)
        Architect(model, F.cross_entropy, *opts, second_order=second_order).arch_step(arch_batch, weight_batch, fwd)
    assert len(seen) == 1 and torch.equal(seen[0], arch_batch[0])
    assert torch.equal(net.alpha, twin.alpha)  # the same step as with the net's own forward
