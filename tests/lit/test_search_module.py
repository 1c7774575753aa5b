"""Bi-level SearchModule: which step moves which parameters, second order, warm-up, toy search, NaN handling."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rspnet.errors import ConfigError, NonFiniteError
from rspnet.lit.search_module import SearchModule
from rspnet.search_space.cell import MixedOp
from rspnet.search_space.ops import PRIMITIVES


class Recording(SearchModule):
    """Records which parameters each arch/weight step changed, and alpha after each arch step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.changed: dict[str, set[str]] = {"arch": set(), "weight": set()}
        self.alpha_after_arch: list[torch.Tensor] = []

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.net.named_parameters()}

    def _diff(self, before: dict[str, torch.Tensor]) -> set[str]:
        return {n for n, p in self.net.named_parameters() if not torch.equal(p, before[n])}

    def arch_step(self, *args) -> None:
        before = self._snapshot()
        super().arch_step(*args)
        self.changed["arch"] |= self._diff(before)
        self.alpha_after_arch.append(self.net.alpha.detach().clone())

    def weight_step(self, *args) -> None:
        before = self._snapshot()
        super().weight_step(*args)
        self.changed["weight"] |= self._diff(before)

    def export_artifacts(self, out: Path, final: bool, arch: object = None) -> None:
        pass


def test_arch_step_moves_only_alpha_and_weight_step_only_weights(make_cfg, tiny_net, tiny_loader, fit) -> None:
    net = tiny_net()
    module = Recording(net, make_cfg("dataset.num_classes=3"))
    fit(module, tiny_loader(), tiny_loader(seed=1))
    assert module.changed["arch"] == {"alpha"}
    assert "alpha" not in module.changed["weight"]
    assert module.changed["weight"] == set(module.weight_names)  # every weight got a gradient


def test_warmup_epochs_skip_arch_steps(make_cfg, tiny_net, tiny_loader, fit) -> None:
    net = tiny_net()
    alpha0 = net.alpha.detach().clone()
    module = Recording(net, make_cfg("dataset.num_classes=3", "search.warmup_epochs=1"))
    fit(module, tiny_loader(), tiny_loader(seed=1))
    assert module.alpha_after_arch == [] and torch.equal(net.alpha, alpha0)


def _first_alpha_update(make_cfg, tiny_net, tiny_loader, fit, *overrides: str) -> torch.Tensor:
    torch.manual_seed(0)
    net = tiny_net()
    alpha0 = net.alpha.detach().clone()
    module = Recording(net, make_cfg("dataset.num_classes=3", "search.weight_lr=0.5", *overrides))
    fit(module, tiny_loader(n=4), tiny_loader(n=4, seed=1))
    return module.alpha_after_arch[0] - alpha0


def test_second_order_runs_and_differs_from_first_order(make_cfg, tiny_net, tiny_loader, fit) -> None:
    first = _first_alpha_update(make_cfg, tiny_net, tiny_loader, fit)
    second = _first_alpha_update(make_cfg, tiny_net, tiny_loader, fit, "search.second_order=true")
    assert torch.isfinite(second).all() and second.abs().sum() > 0
    assert not torch.allclose(first, second, atol=1e-8)
    # same direction overall: the Hessian term is a correction, not a different objective
    assert F.cosine_similarity(first.flatten(), second.flatten(), dim=0) > 0


@pytest.mark.parametrize(("world_size", "precision"), [(2, "32-true"), (1, "16-mixed")], ids=["ddp", "fp16"])
def test_second_order_is_refused_under_ddp_and_fp16(make_cfg, tiny_net, world_size: int, precision: str) -> None:
    module = SearchModule(tiny_net(), make_cfg("dataset.num_classes=3", "search.second_order=true"))
    module._trainer = SimpleNamespace(world_size=world_size, precision=precision)
    with pytest.raises(ConfigError, match="search.second_order"):
        module.on_fit_start()


class OneEdgeNet(nn.Module):
    """1 input channel -> 1x1 lift -> one MixedOp edge -> 1x1 classifier; its own alpha [1, 5]."""

    num_classes = 2

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.alpha = nn.Parameter(1e-3 * torch.randn(1, len(PRIMITIVES)))
        self.lift, self.edge, self.cls = nn.Conv2d(1, channels, 1), MixedOp(channels), nn.Conv2d(channels, 2, 1)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls(self.edge(self.lift(x), F.softmax(self.alpha, -1)[0]))


@pytest.mark.parametrize("seed", [0, 1])
def test_search_picks_the_only_op_that_can_solve_a_toy_task(make_cfg, fit, seed: int) -> None:
    # target = input shifted by (1, 2): only conv_5x5 reaches offset (1, 2) in one op
    # (3x3 kernels reach 1, the dilated 3x3 only even offsets, skip none)
    torch.manual_seed(seed)
    x = (torch.rand(64, 1, 16, 16) > 0.5).float()
    y = torch.roll(x[:, 0], shifts=(1, 2), dims=(1, 2)).long()
    loader = lambda: DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)  # noqa: E731
    net = OneEdgeNet()
    cfg = make_cfg(
        "dataset.num_classes=2", "search.arch_optim=adam", "search.arch_adam_lr=0.05", "search.weight_lr=0.05"
    )
    fit(Recording(net, cfg), loader(), loader(), epochs=3)
    weights = F.softmax(net.alpha.detach(), -1)[0]
    assert PRIMITIVES[int(weights.argmax())] == "conv_5x5"
    assert weights.max() > 0.5, weights


class NaNNet(OneEdgeNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


def test_nonfinite_loss_stops_with_a_checkpoint(make_cfg, fit, tmp_path: Path) -> None:
    cfg = make_cfg("dataset.num_classes=2", out=tmp_path / "run")
    data = TensorDataset(torch.rand(4, 1, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))
    with pytest.raises(NonFiniteError, match="nonfinite.ckpt"):
        fit(Recording(NaNNet(), cfg), DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))
    assert (tmp_path / "run" / "checkpoints" / "nonfinite.ckpt").is_file()


def test_nonfinite_steps_are_skipped_when_asked(make_cfg, fit) -> None:
    net = NaNNet()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    data = TensorDataset(torch.rand(4, 1, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))
    fit(
        Recording(net, make_cfg("dataset.num_classes=2", "search.skip_nonfinite=true")),
        DataLoader(data, batch_size=2),
        DataLoader(data, batch_size=2),
    )
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())
