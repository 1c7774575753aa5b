"""Small correctness items: the weight-LR cosine of step-limited searches, slide vs whole inference
on images smaller than the window, and `rsp.shuffle=false`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rspnet.lit.search_module import SearchModule, steps_to_epochs
from rspnet.stages import run_stage as run

from .conftest import CELL


def test_steps_to_epochs_counts_arch_and_weight_steps() -> None:
    assert steps_to_epochs(8, 1, warmup_epochs=0) == 4  # 2 optimizer steps per batch
    assert steps_to_epochs(9, 2, warmup_epochs=1) == 3  # 2 (warm-up) + 4 + 4
    assert steps_to_epochs(5, float("inf"), warmup_epochs=0) == 1


def test_step_limited_search_anneals_the_lr_once(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """trainer.max_epochs=-1 + max_steps: the cosine spans the run (it used to get T_max=1 and oscillate)."""
    lrs: list[float] = []
    t_max: list[int] = []

    def record(self: SearchModule) -> None:
        t_max.append(self.lr_schedulers().T_max)
        lrs.append(self.optimizers()[0].param_groups[0]["lr"])

    monkeypatch.setattr(SearchModule, "on_train_epoch_start", record, raising=False)
    # 8 train images, arch_split 0.5, batch 4: one batch per epoch, two optimizer steps per batch -> 5 epochs
    run(
        make_cfg(
            *CELL, "trainer.max_epochs=-1", "trainer.max_steps=10", "trainer.limit_val_batches=0", out=tmp_path / "run"
        )
    )
    assert len(lrs) == 5 and set(t_max) == {5}
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs  # strictly decreasing: no restart of the cosine


def _derived(make_cfg, *overrides: str) -> torch.nn.Module:
    from rspnet.genotype import Genotype
    from rspnet.models.derived import DerivedNet, default_macro

    from .conftest import OPS

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


def test_rsp_shuffle_false_reaches_every_network(make_cfg) -> None:
    """rsp.shuffle=false: same weights, other outputs (derived net and both supernets); the bypass half stays last."""
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet
    from rspnet.search_space.cell import RSP

    from .conftest import OPS

    x = torch.randn(1, 3, 32, 64)
    from rspnet.genotype import Genotype

    builders = {
        "derived": lambda cfg: _derived(lambda *o: cfg),
        "cell_supernet": lambda cfg: CellSupernet.from_cfg(cfg, 4).eval(),
        "macro_supernet": lambda cfg: MacroSupernet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), 4).eval(),
    }
    for name, build in builders.items():
        torch.manual_seed(0)
        on, off = (
            build(make_cfg(f"rsp.shuffle={flag}", "model.layers=1", "model.search_layers=1", "model.scales=[4,8]"))
            for flag in ("true", "false")
        )
        off.load_state_dict(on.state_dict())
        with torch.no_grad():
            y_on, y_off = on(x), off(x)
        y_on, y_off = (y["out"] if isinstance(y, dict) else y for y in (y_on, y_off))
        assert not torch.allclose(y_on, y_off), f"{name}: rsp.shuffle=false changed nothing"
        if name == "derived":  # fixed cells take just x: no shuffle means the bypass half comes out untouched, last
            rsp = next(m for m in off.modules() if isinstance(m, RSP))
            h = torch.randn(1, rsp.split * 2, 8, 8)
            with torch.no_grad():
                assert torch.equal(rsp(h)[:, rsp.split :], h[:, rsp.split :])
