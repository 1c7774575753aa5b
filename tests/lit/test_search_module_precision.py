"""Second-order search under mixed precision: the unrolled gradient runs in fp32, other precisions are refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from rspnet.errors import ConfigError
from rspnet.lit.search_module import SearchModule, check_trainer
from rspnet.models.supernet import CellSupernet
from rspnet.search.unrolled import unrolled_arch_grads

torch.set_num_threads(1)


def _net() -> CellSupernet:
    torch.manual_seed(0)
    return CellSupernet(3, base_width=4, scales=[4, 8], layers=1, rsp=False, head_channels=8)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 16, 16, generator=g), torch.randint(0, 3, (2, 16, 16), generator=g)


def _grads(net: CellSupernet, fp32: bool = True) -> list[torch.Tensor]:
    loss = lambda logits, y: F.cross_entropy(logits.float(), y)  # noqa: E731
    weights, arch = list(net.weight_parameters()), list(net.arch_parameters())
    return unrolled_arch_grads(net, loss, weights, arch, _batch(0), _batch(1), 0.1, 5e-4, 0.01, fp32=fp32)[1]


def test_unrolled_gradient_is_computed_in_fp32_under_bf16_autocast() -> None:
    net = _net()
    reference = _grads(net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = _grads(net)
        raw = _grads(net, fp32=False)  # the same computation left in the caller's bf16 autocast
    assert all(torch.equal(a, b) for a, b in zip(reference, under_amp))
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(reference, raw))  # bf16 would change it


@pytest.mark.parametrize("precision", ["16-mixed", "16-true", "bf16-true", "transformer-engine"])
def test_second_order_refuses_non_fp32_parameters_and_fp16_scaling(make_cfg, precision: str) -> None:
    search = make_cfg("search.second_order=true").search
    with pytest.raises(ConfigError, match=f"trainer.precision={precision}.*32-true or bf16-mixed"):
        check_trainer(search, SimpleNamespace(world_size=1, precision=precision))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "64-true"])
def test_second_order_accepts_fp32_parameters(make_cfg, precision: str) -> None:
    check_trainer(make_cfg("search.second_order=true").search, SimpleNamespace(world_size=1, precision=precision))


def test_second_order_search_step_runs_under_bf16_mixed(make_cfg) -> None:
    net = _net()
    alpha0 = net.alpha.detach().clone()
    module = SearchModule(net, make_cfg("dataset.num_classes=3", "search.second_order=true"))
    module.export_artifacts = lambda *a, **k: None
    x, y = _batch(2)
    loader = lambda: DataLoader(TensorDataset(x, y), batch_size=2)  # noqa: E731
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, CombinedLoader({"weight": loader(), "arch": loader()}, "max_size_cycle"))
    assert net.alpha.dtype == torch.float32 and torch.isfinite(net.alpha).all()
    assert not torch.equal(net.alpha, alpha0)
