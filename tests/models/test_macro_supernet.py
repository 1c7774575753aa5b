"""Stage-2 supernet: candidate sets, parameter split, shared alignments, gradients."""

from __future__ import annotations

import pytest
import torch

from rspnet.genotype import STEM, Genotype
from rspnet.models.macro_supernet import MacroSupernet, candidate_inputs
from rspnet.search_space.trellis import Align

SCALES = [4, 8, 16, 32]


@pytest.fixture
def genotype() -> Genotype:
    return Genotype.from_ops(["conv_3x3", "dw_conv_3x3", "skip_connect"], rsp=True)


def _net(genotype: Genotype, **kw) -> MacroSupernet:
    torch.manual_seed(0)
    args = dict(num_classes=5, base_width=4, scales=SCALES, layers=3, head_channels=8)
    args.update(kw)
    return MacroSupernet(genotype, **args)


def test_candidates_are_the_stem_plus_every_earlier_node() -> None:
    assert candidate_inputs(1, SCALES, None) == [STEM]
    assert candidate_inputs(3, SCALES, None) == [STEM] + [(l, s) for l in (1, 2) for s in SCALES]
    # lookback=1: only the previous layer (plus the stem, always)
    assert candidate_inputs(3, SCALES, 1) == [STEM] + [(2, s) for s in SCALES]


def test_forward_shape_and_path_weights(genotype: Genotype) -> None:
    net = _net(genotype)
    logits = net(torch.randn(2, 3, 32, 64))
    assert logits.shape == (2, 5, 32, 64)
    assert set(net.path_weights) == set(net.nodes()) and len(net.nodes()) == 3 * len(SCALES)
    for node, w in net.path_weights.items():
        assert w.shape == (2, len(net.candidates[node]))
        assert torch.allclose(w.sum(-1), torch.ones(2))


def test_arch_and_weight_parameters_partition_the_model(genotype: Genotype) -> None:
    net = _net(genotype)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    assert all(id(b) in arch for b in net.betas().values())
    names = {n for n, p in net.named_parameters() if id(p) in arch}
    assert all(".beta" in n or ".cam." in n for n in names)


def test_one_backward_gives_every_parameter_a_finite_gradient(genotype: Genotype) -> None:
    net = _net(genotype, rsp=False)
    net(torch.randn(2, 3, 32, 64)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _count_align_calls(net: MacroSupernet) -> int:
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in net.modules() if isinstance(m, Align)]
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 64))
    for h in hooks:
        h.remove()
    return len(calls)


@pytest.mark.parametrize("lookback", [None, 1])
def test_each_alignment_is_computed_once_per_source_and_target_scale(genotype: Genotype, lookback: int | None) -> None:
    net = _net(genotype, layers=4, lookback=lookback).eval()
    pairs = {(src, node[1]) for node, cands in net.candidates.items() for src in cands}
    per_node = sum(len(c) for c in net.candidates.values())
    assert _count_align_calls(net) == len(pairs) == len(net.aligns)
    assert per_node > len(pairs)  # the cache saves something at L = 4
    # the uncached path gives the same output, with one Align call per (source, node)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        cached = net(x)
        net.reuse_alignment = False
        uncached = net(x)
    assert torch.allclose(cached, uncached, atol=1e-5)
    assert _count_align_calls(net) == per_node


def test_rejects_scales_without_the_stem_scale(genotype: Genotype) -> None:
    with pytest.raises(ValueError, match="stem scale"):
        _net(genotype, scales=[8, 16])
