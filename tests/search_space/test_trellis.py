"""The one trellis: node sizes, the shared forward loop, stable state_dict keys, heads registry, layers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from rspnet.genotype import Genotype
from rspnet.models import heads
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.models.heads.fcn import FCNHead
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.models.supernet import CellSupernet
from rspnet.search_space.ops import PRIMITIVES, RELU_FIRST, make_op
from rspnet.search_space.trellis import STEM, Node, Stem, Trellis, node_key, node_sizes

SRC = Path(__file__).resolve().parents[2] / "src" / "rspnet"
GENOTYPE = Genotype.from_weights([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]], rsp=True)


def _cell() -> CellSupernet:
    torch.manual_seed(0)
    return CellSupernet(5, base_width=4, scales=[4, 8], layers=2, head_channels=8)


def _macro() -> MacroSupernet:
    torch.manual_seed(0)
    return MacroSupernet(GENOTYPE, 5, base_width=4, scales=[4, 8], layers=2, head_channels=8)


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (1, 5), (45, 67)])
def test_node_sizes_are_the_ceiling_of_the_stem_size_over_the_stride(hw: tuple[int, int]) -> None:
    sizes = node_sizes(hw, [4, 8, 16, 32])
    assert sizes == {s: (math.ceil(hw[0] / (s // 4)), math.ceil(hw[1] / (s // 4))) for s in (4, 8, 16, 32)}


class _Recorder(Trellis):
    """A trellis whose nodes add their inputs; records every combine call."""

    def __init__(self) -> None:
        super().__init__()
        self.scales, self.layers = [4, 8], 2
        self.stem = Stem(3, 2)
        self.inputs: dict[Node, list[Node]] = {
            (1, 4): [STEM],
            (1, 8): [STEM],
            (2, 4): [(1, 4), (1, 8)],
            (2, 8): [(1, 8)],
        }
        self.calls: list[tuple[Node, int, tuple]] = []

    def combine(self, node: Node, xs: list[torch.Tensor], size: tuple) -> torch.Tensor:
        self.calls.append((node, len(xs), tuple(size)))
        return sum(torch.nn.functional.adaptive_avg_pool2d(x, size) for x in xs)


def test_the_loop_calls_combine_per_node_in_input_order_at_the_node_size() -> None:
    net = _Recorder()
    feats = net.forward_features(torch.randn(1, 3, 36, 52))  # stem -> 9 x 13
    assert net.calls == [((1, 4), 1, (9, 13)), ((1, 8), 1, (5, 7)), ((2, 4), 2, (9, 13)), ((2, 8), 1, (5, 7))]
    assert [f.shape[-2:] for f in feats] == [(9, 13), (5, 7)]


def test_the_three_nets_are_trellises_with_their_own_combine_only() -> None:
    for cls in (CellSupernet, MacroSupernet, DerivedNet):
        assert issubclass(cls, Trellis) and "combine" in vars(cls)
        assert "from_cfg" in vars(cls)


def test_state_dict_keys_are_those_of_existing_checkpoints(make_cfg) -> None:
    # keys written by every release so far: renaming one would break loading old checkpoints
    cell = set(_cell().state_dict())
    assert {
        "alpha",
        "stem.layers.0.weight",
        "aligns.l0_s4_to_l1_s8.proj.0.weight",
        "aligns.l1_s8_to_l2_s4.proj.1.running_mean",
        "cells.l2_s8.cell.edges.0.ops.0.1.weight",
        "head.fuse.0.weight",
        "head.fuse.1.running_var",
        "head.classifier.bias",
    } <= cell
    macro = set(_macro().state_dict())
    assert {
        "aligns.l0_s4_to8.proj.0.weight",
        "aligns.l1_s8_to4.proj.0.weight",
        "pams.l2_s4.beta",
        "cells.l1_s4.cell.project.0.weight",
        "head.fuse.0.weight",
    } <= macro
    derived = set(DerivedNet.from_cfg(make_cfg(), GENOTYPE, default_macro(make_cfg()), 5).state_dict())
    assert {
        "stem.layers.1.weight",
        "trellis.l1_s8.aligns.0.proj.0.weight",
        "trellis.l2_s8.cells.0.cell.project.1.bias",
        "head.fuse.0.weight",
        "head.classifier.weight",
    } <= derived


def test_search_nets_have_no_affine_batchnorm_and_release_per_forward_state() -> None:
    for net in (_cell(), _macro()):
        assert isinstance(net.head, FCNHead)
        assert not any(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))  # SPEC §2.1
        assert net(torch.randn(2, 3, 32, 40)).shape == (2, 5, 32, 40)
    cell, macro = _cell(), _macro()
    cell(torch.randn(1, 3, 16, 16))
    macro(torch.randn(1, 3, 16, 16))
    assert cell._weights is None and macro._aligned == {}  # no activations held between forwards
    assert set(macro.path_weights) == set(macro.nodes())


def test_relu_first_names_exactly_the_ops_that_start_with_relu() -> None:
    for name in PRIMITIVES:
        op = make_op(name, 4)
        starts = isinstance(op, nn.Sequential) and isinstance(op[0], nn.ReLU)
        assert starts == (name in RELU_FIRST), name


def test_a_head_added_to_the_registry_is_built_by_name(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    class Tiny(nn.Module):
        def __init__(self, widths: list[int], k: int) -> None:
            super().__init__()
            self.cls = nn.Conv2d(widths[0], k, 1)

        @classmethod
        def from_cfg(cls, cfg, widths: list[int], k: int) -> Tiny:
            return cls(widths, k)

        def forward(self, feats: list[torch.Tensor], size: tuple) -> dict[str, torch.Tensor]:
            return {"out": torch.nn.functional.interpolate(self.cls(feats[0]), size=size)}

    monkeypatch.setitem(heads.HEADS, "tiny", Tiny)
    cfg = make_cfg("head.name=tiny")
    net = DerivedNet.from_cfg(cfg, GENOTYPE, default_macro(cfg), 3)
    assert isinstance(net.head, Tiny) and net.eval()(torch.randn(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)


def test_resize_is_the_one_bilinear_interpolation_in_src() -> None:
    users = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if "F.interpolate(" in p.read_text()]
    assert users == ["models/layers.py"], users


def test_node_key_is_the_module_dict_key() -> None:
    assert node_key((2, 16)) == "l2_s16" and node_key(STEM) == "l0_s4"
