"""`train.channels_last` and `train.compile`: same network, same checkpoints, faster layouts/kernels."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from rspnet.architecture import load_architecture
from rspnet.lit.seg_module import SegModule, build_seg_module
from rspnet.losses import seg_loss

SMALL = ["model.layers=2", "dataset.crop_size=[32,64]"]


def module(make_cfg: Callable[..., DictConfig], *overrides: str) -> tuple[SegModule, DictConfig]:
    cfg = make_cfg(*SMALL, *overrides)
    genotype, macro = load_architecture(cfg)
    torch.manual_seed(0)
    return build_seg_module(cfg, genotype, macro, 19), cfg


def test_channels_last_same_outputs_and_checkpoint_keys(make_cfg: Callable[..., DictConfig]) -> None:
    plain, cfg = module(make_cfg)
    cl, _ = module(make_cfg, "train.channels_last=true")
    convs = [m.weight for m in cl.net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert list(cl.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(2, 3, 32, 64), torch.randint(0, 19, (2, 32, 64))
    a, b = plain(x)["out"], cl(x)["out"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    seg_loss(cl(x), y, 255).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cl.net.parameters())


def test_compile_option_compiles_in_place(make_cfg: Callable[..., DictConfig]) -> None:
    plain, _ = module(make_cfg)
    compiled, _ = module(make_cfg, "train.compile=true")
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    # nn.Module.compile() keeps parameter names: checkpoints load into an eager network and back
    assert list(compiled.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_compiled_forward_matches_eager(make_cfg: Callable[..., DictConfig]) -> None:
    plain, _ = module(make_cfg)
    compiled, _ = module(make_cfg, "train.compile=true")
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(x)["out"], plain.eval()(x)["out"], rtol=1e-4, atol=1e-4)
