"""What the bi-level search computes: the arch step sees only the arch half and the weight step only
the weight half, and the second-order arch gradient is the exact unrolled gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rspnet.lit.search_module import SearchModule
from rspnet.search.unrolled import unrolled_arch_grads
from tests.conftest import CELL

pytestmark = pytest.mark.reliability


class _Indexed(torch.utils.data.Dataset):
    """Image i is filled with the value i: any batch tells which samples it holds."""

    def __init__(self, n: int, size: tuple[int, int]) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((3, *self.size), float(i)), torch.zeros(self.size, dtype=torch.long)


def test_arch_step_sees_only_the_arch_half_and_weight_step_only_the_weight_half(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    from rspnet.data import build_datamodule
    from rspnet.lit.fit import fit_search
    from rspnet.models.supernet import CellSupernet

    # no held-out slice: 12 images split 6/6 into full batches of 2, so no batch is dropped and every
    # image of each half is seen in every epoch (with a slice, an odd half lost one image per epoch
    # to drop_last, and the same one in both epochs about 1 run in 5)
    cfg = make_cfg(
        *CELL,
        "trainer.max_epochs=2",
        "dataset.num_train=12",
        "dataset.batch_size=2",
        "train.select=last",
        "train.holdout_fraction=0",
        out=tmp_path / "run",
    )
    dm = build_datamodule(cfg)
    dm.setup("fit")
    dm.train_dataset = _Indexed(12, (32, 64))
    net = CellSupernet.from_cfg(cfg, dm.num_classes)
    seen: dict[str, set[int]] = {"arch": set(), "weight": set()}
    step: list[str] = []

    def record(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if step:  # validation forwards are outside both steps
            seen[step[-1]].update(int(v) for v in args[0][:, 0, 0, 0])

    net.register_forward_pre_hook(record)

    def within(kind: str, method):  # noqa: ANN001, ANN202
        def wrapped(self, *args):  # noqa: ANN001, ANN002, ANN202
            step.append(kind)
            try:
                return method(self, *args)
            finally:
                step.pop()

        return wrapped

    monkeypatch.setattr(SearchModule, "arch_step", within("arch", SearchModule.arch_step))
    monkeypatch.setattr(SearchModule, "weight_step", within("weight", SearchModule.weight_step))
    fit_search(cfg, SearchModule(net, cfg), dm)
    split = dm.split_state()
    assert seen["arch"] == set(split["arch"]) and seen["weight"] == set(split["weight"])  # each half, all of it
    assert not set(split["arch"]) & set(split["weight"])
    assert len(split["arch"]) == len(split["weight"]) == 6


class _TinySupernet(nn.Module):
    """Two candidate ops mixed by softmax(alpha), a 1x1 classifier: small enough for exact second derivatives."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 3, 1)
        self.cls = nn.Conv2d(3, 3, 1)
        self.alpha = nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.alpha.softmax(0)
        return self.cls(torch.tanh(w[0] * self.a(x) + w[1] * torch.relu(self.b(x))))


def _exact_unrolled(
    net: _TinySupernet, loss_fn, weights: dict[str, torch.Tensor], wb, ab, xi: float, wd: float
) -> torch.Tensor:  # noqa: ANN001
    """d/d alpha of L_val(w - xi * (grad_w L_train(w, alpha) + wd * w), alpha), by double backward."""
    names = list(weights)
    params = dict(weights) | {"alpha": net.alpha}
    g = torch.autograd.grad(
        loss_fn(functional_call(net, params, (wb[0],)), wb[1]), [params[n] for n in names], create_graph=True
    )
    unrolled = {n: params[n] - xi * (gn + wd * params[n]) for n, gn in zip(names, g)} | {"alpha": net.alpha}
    return torch.autograd.grad(loss_fn(functional_call(net, unrolled, (ab[0],)), ab[1]), net.alpha)[0]


# measured max |error| (float64, this model): r=1e-4: 9e-14, r=1e-2 (the default): 9e-10; second-order term: 2.7e-3
@pytest.mark.parametrize("r, atol", [(1e-4, 1e-12), (1e-2, 1e-8)], ids=["r=1e-4", "r=1e-2(default)"])
def test_second_order_gradient_equals_the_exact_unrolled_gradient(r: float, atol: float) -> None:
    """float64; the central difference is O(r^2) off the exact Hessian-vector product: r=1e-4 matches
    to atol 1e-12, the default r=0.01 to 1e-8; a one-sided difference or a missing term is far off."""
    torch.manual_seed(0)
    net = _TinySupernet().double()
    loss_fn = lambda logits, y: F.cross_entropy(logits, y)  # noqa: E731
    wb = (torch.randn(2, 2, 5, 5, dtype=torch.float64), torch.randint(0, 3, (2, 5, 5)))
    ab = (torch.randn(2, 2, 5, 5, dtype=torch.float64), torch.randint(0, 3, (2, 5, 5)))
    weights = [p for n, p in net.named_parameters() if n != "alpha"]
    xi, wd = 0.5, 1e-3
    exact = _exact_unrolled(net, loss_fn, {n: p for n, p in net.named_parameters() if n != "alpha"}, wb, ab, xi, wd)
    before = [p.detach().clone() for p in net.parameters()]
    _, (approx,) = unrolled_arch_grads(net, loss_fn, weights, [net.alpha], wb, ab, xi, wd, r=r)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))  # the weights are restored
    first_order = torch.autograd.grad(loss_fn(net(ab[0]), ab[1]), net.alpha)[0]
    assert (exact - first_order).abs().max() > 1e4 * atol  # the second-order term is not negligible here
    assert torch.allclose(approx, exact, rtol=0, atol=atol), (approx - exact).abs().max().item()
