"""`rsp.shuffle=false` (search_space/cell.py RSP) reaches the derived net and both supernets."""

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


def test_rsp_shuffle_false_reaches_every_network(make_cfg) -> None:
    """rsp.shuffle=false: same weights, other outputs (derived net and both supernets); the bypass half stays last."""
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet
    from rspnet.search_space.cell import RSP
    from tests.conftest import OPS

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
