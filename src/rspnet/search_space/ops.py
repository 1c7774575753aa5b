"""The five candidate operations. `PRIMITIVES` + `OPS` are the one source of op names."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

PRIMITIVES: list[str] = ["conv_3x3", "dw_conv_3x3", "conv_5x5", "dil_conv_3x3", "skip_connect"]


def relu_conv_bn(channels: int, kernel: int, dilation: int = 1, affine: bool = True) -> nn.Sequential:
    """ReLU -> Conv(k, same padding) -> BN; keeps C x H x W."""
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(channels, channels, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(channels, affine=affine),
    )


def dw_sep_conv(channels: int, affine: bool = True) -> nn.Sequential:
    """ReLU -> 3x3 depthwise -> 1x1 pointwise -> BN (depthwise-separable)."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels, affine=affine),
    )


OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "conv_3x3": lambda c, affine: relu_conv_bn(c, 3, affine=affine),
    "dw_conv_3x3": lambda c, affine: dw_sep_conv(c, affine=affine),
    "conv_5x5": lambda c, affine: relu_conv_bn(c, 5, affine=affine),
    "dil_conv_3x3": lambda c, affine: relu_conv_bn(c, 3, dilation=2, affine=affine),
    "skip_connect": lambda c, affine: nn.Identity(),
}
assert list(OPS) == PRIMITIVES, "OPS and PRIMITIVES must list the same names in the same order"

# ops built as ReLU -> ...: MixedOp applies that ReLU once for all of them (`_rest` skips it per op)
RELU_FIRST: frozenset[str] = frozenset({"conv_3x3", "dw_conv_3x3", "conv_5x5", "dil_conv_3x3"})


def make_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    """Build the op `name` at width `channels` (KeyError names the valid ops)."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; valid ops: {', '.join(PRIMITIVES)}")
    return OPS[name](channels, affine)
