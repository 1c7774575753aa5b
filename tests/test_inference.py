"""Inference modes: slide and multiscale_flip shapes; slide == whole where it must be."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype
from rspnet.inference import infer, infer_from_cfg, main_logits, slide_logits
from rspnet.models.derived import DerivedNet, default_macro

OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]


@pytest.fixture
def net(make_cfg) -> nn.Module:
    torch.manual_seed(0)
    cfg = make_cfg()
    return DerivedNet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), default_macro(cfg), num_classes=4).eval()


def test_modes_give_the_whole_image_shape(net: nn.Module) -> None:
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        whole = infer(net, x, "whole")
        slide = infer(net, x, "slide", crop=(32, 32), stride=(16, 20))
        msf = infer(net, x, "multiscale_flip", scales=(0.75, 1.0, 1.25))
    assert whole.shape == slide.shape == msf.shape == (2, 4, 40, 56)
    assert torch.isfinite(slide).all() and torch.isfinite(msf).all()
    # multiscale_flip returns log-probabilities: they exponentiate to a distribution per pixel
    assert torch.allclose(msf.exp().sum(1), torch.ones(2, 40, 56), atol=1e-4)


def test_slide_with_a_window_covering_the_image_equals_whole(net: nn.Module) -> None:
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(infer(net, x, "slide", crop=(40, 56), stride=(8, 8)), infer(net, x, "whole"), atol=1e-6)


def test_slide_averages_overlaps_exactly() -> None:
    # a pointwise net is translation-equivariant, so any tiling must reproduce the whole image
    torch.manual_seed(0)
    net = nn.Conv2d(3, 5, 1)
    x = torch.randn(2, 3, 37, 51)
    with torch.no_grad():
        tiled = slide_logits(net, x, crop=(16, 20), stride=(7, 9))
        padded = slide_logits(net, x, crop=(64, 64), stride=(32, 32))  # window larger than the image
    assert torch.allclose(tiled, net(x), atol=1e-5)
    assert torch.allclose(padded, net(x), atol=1e-5)


def test_multiscale_flip_at_scale_one_is_flip_averaged_softmax(net: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        p = (net(x)["out"].softmax(1) + net(x.flip(-1))["out"].flip(-1).softmax(1)) / 2
        assert torch.allclose(infer(net, x, "multiscale_flip", scales=(1.0,)).exp(), p, atol=1e-5)


def test_infer_from_cfg_reads_train_options(make_cfg, net: nn.Module) -> None:
    cfg = make_cfg("inference.mode=slide", "inference.slide_crop=[24,24]")
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        assert infer_from_cfg(net, x, cfg).shape == (1, 4, 40, 56)
    with pytest.raises(ConfigError, match="inference.mode=bogus"):
        infer_from_cfg(net, x, make_cfg("inference.mode=bogus"))


def test_multiscale_flip_can_slide_each_scale(net: nn.Module, make_cfg) -> None:
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        plain = infer(net, x, "multiscale_flip", scales=(1.0,))
        # a window covering the image reproduces the whole-image pass; a smaller one still gives the shape
        assert torch.allclose(infer(net, x, "multiscale_flip", scales=(1.0,), crop=(32, 48)), plain, atol=1e-5)
        cfg = make_cfg("inference.mode=multiscale_flip", "inference.slide_crop=[16,16]", "inference.scales=[0.5,1.0]")
        assert infer_from_cfg(net, x, cfg).shape == plain.shape


def test_upsample_argmax_equals_interpolate_then_argmax() -> None:
    import torch.nn.functional as F

    from rspnet.inference import upsample_argmax

    torch.manual_seed(0)
    scores = torch.randn(2, 6, 9, 13)
    full = F.interpolate(scores, size=(37, 50), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(upsample_argmax(scores, (37, 50)), full)
    assert torch.equal(upsample_argmax(scores, (9, 13)), scores.argmax(1))


def test_sw_batch_gives_the_same_logits_in_fewer_calls(net: nn.Module) -> None:
    calls = []

    def counted(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return net(t)["out"]

    x = torch.randn(2, 3, 40, 72)
    with torch.no_grad():
        one = slide_logits(counted, x, crop=(32, 32), stride=(16, 16), sw_batch=1)
        n_one = len(calls)
        calls.clear()
        batched = slide_logits(counted, x, crop=(32, 32), stride=(16, 16), sw_batch=4)
    assert n_one == 2 * 4  # 2 x 4 windows, one network call each
    assert calls == [8, 8]  # 4 windows of both images per call
    assert torch.allclose(one, batched, atol=1e-5)
    with pytest.raises(ConfigError, match="sw_batch"):
        slide_logits(counted, x, crop=(32, 32), stride=(16, 16), sw_batch=0)


def test_main_logits_takes_out_of_a_derived_nets_dict_and_a_bare_tensor_as_is(net: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, dict) and set(out) >= {"out"}
    assert main_logits(out) is out["out"]
    bare = torch.randn(1, 4, 8, 8)
    assert main_logits(bare) is bare
