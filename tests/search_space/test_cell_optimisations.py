"""The search-step optimisations compute exactly what the plain formulas do."""

from __future__ import annotations

import torch

from rspnet.search_space.cell import RSP, MixedOp, SearchCell, channel_shuffle


def test_mixed_op_with_shared_relu_is_the_weighted_sum_of_its_ops() -> None:
    torch.manual_seed(0)
    op = MixedOp(8)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    w = torch.softmax(torch.randn(5), 0)
    fast = op(x, w)
    plain = sum(wi * o(x) for wi, o in zip(w, op.ops))  # every op applies its own ReLU
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)
    g_fast = torch.autograd.grad(fast.square().sum(), [x, *op.parameters()])
    g_plain = torch.autograd.grad(plain.square().sum(), [x, *op.parameters()])
    for a, b in zip(g_fast, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_rsp_stack_shuffle_equals_channel_shuffle_of_the_concat() -> None:
    torch.manual_seed(0)
    rsp = RSP(8, lambda c: SearchCell(c), enabled=True, shuffle=True)
    x, w = torch.randn(2, 8, 6, 6), torch.softmax(torch.randn(3, 5), -1)
    y = rsp(x, w)
    expected = channel_shuffle(torch.cat([rsp.cell(x[:, :4], w), x[:, 4:]], dim=1), 2)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # the bypassed half lands on the odd channels, so the next stacked cell processes it
    torch.testing.assert_close(y[:, 1::2], x[:, 4:], rtol=0, atol=0)
