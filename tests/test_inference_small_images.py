"""Slide vs whole inference on images smaller than the window: one window covers the image."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.reliability


def _derived(make_cfg, *overrides: str) -> torch.nn.Module:
    from rspnet.genotype import Genotype
    from rspnet.models.derived import DerivedNet, default_macro
    from tests.conftest import OPS

    torch.manual_seed(0)
    cfg = make_cfg(*overrides)
    return DerivedNet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), default_macro(cfg), num_classes=4).eval()


@pytest.mark.parametrize("size", [(20, 28), (7, 9), (32, 20)], ids=["both_smaller", "tiny", "one_side_smaller"])
def test_slide_equals_whole_on_images_smaller_than_the_window(make_cfg, size: tuple[int, int]) -> None:
    """One window covers the image: slide must run exactly what whole runs (no zero padding)."""
    from rspnet.inference import infer

    net = _derived(make_cfg)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        whole = infer(net, x, "whole")
        slide = infer(net, x, "slide", crop=(32, 64), stride=(16, 32))
    assert torch.allclose(slide, whole, atol=1e-6), float((slide - whole).abs().max())
