"""The peer models of the benchmarks: HRNetV2-W48 reference and the PC-DARTS partial-channel MixedOp."""

from __future__ import annotations

import pytest
import torch

from bench.hrnet_ref import WIDTHS, hrnetv2_w48
from bench.search import PCMixedOp, partial_channel
from rspnet.models.supernet import CellSupernet
from rspnet.search_space.cell import MixedOp, channel_shuffle

PUBLISHED_HRNETV2_W48 = 65.9e6  # HRNetV2-W48 + HRNetV2 (FCN) head, Cityscapes (Wang et al. 2020, Table 4)


def test_hrnet_param_count_matches_published() -> None:
    with torch.device("meta"):
        net = hrnetv2_w48(19)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - PUBLISHED_HRNETV2_W48) / PUBLISHED_HRNETV2_W48 < 0.005, n
    # the head is rspnet's FCN head on the 720-channel HRNetV2 representation
    assert sum(p.numel() for p in net.head.parameters()) == 720 * 720 + 2 * 720 + 720 * 19 + 19


def test_hrnet_features_and_logits() -> None:
    torch.manual_seed(0)
    net = hrnetv2_w48(5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = net.forward_features(x)
        out = net.head(feats, (64, 96))["out"]
    assert [f.shape[1] for f in feats] == list(WIDTHS)
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert out.shape == (1, 5, 64, 96) and torch.isfinite(out).all()


def test_pc_mixed_op_shape_grad_and_bypass() -> None:
    torch.manual_seed(0)
    op = PCMixedOp(16, k=4)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    w = torch.softmax(torch.randn(5, requires_grad=True), 0)
    y = op(x, w)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in op.parameters())
    # only the first C/K channels go through the ops; undoing the K-group shuffle gives the rest back unchanged
    unshuffled = channel_shuffle(y.detach(), 16 // 4)
    assert torch.equal(unshuffled[:, 4:], x.detach()[:, 4:])
    assert all(m.weight.shape[0] == 4 for m in op.modules() if isinstance(m, torch.nn.Conv2d))


def test_pc_mixed_op_rejects_indivisible_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        PCMixedOp(6, k=4)


def test_partial_channel_replaces_every_mixed_op() -> None:
    net = CellSupernet(19, base_width=8, scales=[4, 8], layers=2, rsp=False)
    full = sum(p.numel() for p in net.parameters())
    partial_channel(net, 4)
    assert not any(isinstance(m, MixedOp) for m in net.modules())
    assert sum(isinstance(m, PCMixedOp) for m in net.modules()) == 3 * 4  # 3 edges x 4 nodes
    assert sum(p.numel() for p in net.parameters()) < full
    out = net(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 19, 32, 32)


def test_pc_supernet_is_built_without_the_full_width_ops() -> None:
    from bench.search import build

    net, _ = build({"model": "tiny", "rsp": False, "pc_k": 4})
    assert not any(p.is_meta for p in net.parameters()) and not any(b.is_meta for b in net.buffers())
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert 0 < float(net.alpha.detach().abs().max()) < 0.01  # DARTS-style near-uniform init
    assert net(torch.randn(1, 3, 32, 64)).shape == (1, 19, 32, 64)
