"""Stage-1 supernet: registered alpha, parameter split, gradients, RSP parameter saving."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rspnet.lit.search_module import split_parameters
from rspnet.models.supernet import CellSupernet, neighbour_inputs
from rspnet.search_space.cell import RSP, SearchCell
from rspnet.search_space.ops import PRIMITIVES


def test_alpha_is_a_registered_parameter_in_state_dict(tiny_net) -> None:
    net = tiny_net()
    assert net.state_dict()["alpha"].shape == (3, len(PRIMITIVES))
    assert [p is net.alpha for p in net.arch_parameters()] == [True]


def test_weight_and_arch_parameters_are_disjoint_and_complete(tiny_net) -> None:
    net = tiny_net()
    weight, arch = split_parameters(net)
    assert arch == ["alpha"]
    assert not set(weight) & set(arch)
    assert set(weight) | set(arch) == {n for n, _ in net.named_parameters()}


def test_trellis_neighbourhood() -> None:
    scales = [4, 8, 16, 32]
    assert neighbour_inputs(1, 16, scales) == [(0, 4)]  # layer 1 reads the stem (resized)
    assert neighbour_inputs(2, 4, scales) == [(1, 4), (1, 8)]
    assert neighbour_inputs(3, 16, scales) == [(2, 8), (2, 16), (2, 32)]
    assert neighbour_inputs(2, 32, scales) == [(1, 16), (1, 32)]


def test_forward_shape_and_every_parameter_gets_a_finite_gradient() -> None:
    net = CellSupernet(5, base_width=4, scales=[4, 8, 16, 32], layers=2, head_channels=8)
    x, y = torch.randn(2, 3, 32, 48), torch.randint(0, 5, (2, 32, 48))
    logits = net(x)
    assert logits.shape == (2, 5, 32, 48)
    F.cross_entropy(logits, y).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_genotype_takes_the_argmax_op_per_edge(tiny_net) -> None:
    net = tiny_net()
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[0, 2] = net.alpha[1, 4] = net.alpha[2, 1] = 1.0
    g = net.genotype({"dataset": "toy", "epochs": 1, "seed": 0})
    assert g.ops == ["conv_5x5", "skip_connect", "dw_conv_3x3"]
    assert g.rsp is True and g.search["dataset"] == "toy"


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels", [32, 96])
def test_rsp_cell_has_about_a_quarter_of_the_parameters(channels: int) -> None:
    on = RSP(channels, lambda c: SearchCell(c, affine=True), enabled=True)
    off = RSP(channels, lambda c: SearchCell(c, affine=True), enabled=False)
    ratio = _params(on) / _params(off)
    # conv params scale with C^2; the depthwise and BN terms (linear in C) push it slightly above 1/4
    assert 0.25 <= ratio < 0.27, ratio


def test_rsp_supernet_cells_are_a_quarter_of_the_full_ones(tiny_net) -> None:
    cells = lambda net: sum(_params(c) for c in net.cells.values())  # noqa: E731
    ratio = cells(tiny_net(rsp=True)) / cells(tiny_net(rsp=False))
    assert 0.25 <= ratio < 0.3, ratio
