"""Resource targets (models/cost.py): exact expected cost, the banded penalty, the search and sample_arch at a target."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype
from rspnet.models.blocks import Layout, block_params
from rspnet.models.cost import (
    BAND,
    CellCost,
    CellTarget,
    Target,
    count_gflops,
    count_params,
    mac_price,
    net_cost,
    param_price,
)
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.search.bilevel import Architect, build_optimizers
from rspnet.search_space.ops import PRIMITIVES
from rspnet.stages.cell_search import run as run_cell_search
from rspnet.stages.sample_arch import sample_architecture

MICRO = ("stage=cell_search", "debug=tiny", "model=micro")


@pytest.mark.parametrize("variant", [(), ("rsp=off", "head=ocr")], ids=["rsp-fcn", "norsp-ocr"])
def test_expected_cost_is_the_derived_nets_params_for_every_one_hot_alpha(make_cfg, variant) -> None:
    cfg = make_cfg("stage=cell_search", "model=tiny", *variant)
    cost = CellCost.build(Layout.from_cfg(cfg), default_macro(cfg), param_price)
    for ops in [[op] * 3 for op in PRIMITIVES] + [["conv_5x5", "skip_connect", "dw_conv_3x3"]]:
        one_hot = torch.tensor([[float(op == p) for p in PRIMITIVES] for op in ops])
        counted = count_params(cfg, Genotype.from_ops(ops), default_macro(cfg))
        assert float(cost.expected(one_hot)) == cost.of_ops(ops) == counted, ops
    assert cost.per_op[PRIMITIVES.index("skip_connect")] == 0 and cost.range()[0] == cost.fixed


def test_blocks_add_up_to_the_params_of_random_derived_nets(make_cfg) -> None:
    cfg = make_cfg("stage=sample_arch", "model=tiny", "model.layers=4")
    layout = Layout.from_cfg(cfg)
    for seed in range(5):
        genotype, macro, info = sample_architecture(cfg, seed)
        blocks = layout.net_blocks(genotype.ops, macro)
        assert sum(n * block_params(b) for b, n in blocks.items()) == info["params"]


def test_blocks_add_up_to_the_macs_of_random_derived_nets(make_cfg) -> None:
    """search.target_gmacs prices each block by its MACs: they add up to the whole derived net's count."""
    cfg = make_cfg("stage=sample_arch", "model=tiny", "model.layers=4")
    layout = Layout.from_cfg(cfg)
    for seed in range(3):
        genotype, macro, _ = sample_architecture(cfg, seed)
        with torch.device("meta"):
            net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
        counted = count_gflops(net, tuple(cfg.dataset.crop_size)) / 2  # GMACs
        assert counted > 0
        assert net_cost(layout, genotype.ops, macro, mac_price) == pytest.approx(counted, rel=1e-9)


def test_penalty_is_zero_inside_the_band_and_pulls_back_outside() -> None:
    target = Target("params", 1000.0, 2.0, param_price)
    for cost in (900.0, 1000.0, 1100.0):
        assert float(target.penalty(torch.tensor(cost, dtype=torch.float64))) == 0
    for cost, slope in ((1300.0, 1), (600.0, -1)):
        e = torch.tensor(cost, dtype=torch.float64, requires_grad=True)
        p = target.penalty(e)
        p.backward()
        assert float(p.detach()) == pytest.approx(2.0 * (abs(cost / 1000 - 1) - BAND))
        assert float(e.grad) == pytest.approx(slope * 2.0 / 1000)  # pushes E back towards the target


def _cell_target(make_cfg, value: float) -> CellTarget:
    target = CellTarget.from_cfg(make_cfg(*MICRO, f"search.target_params={value}", "search.target_weight=10"))
    assert target is not None
    return target


def test_the_penalty_moves_alpha_until_the_expected_cost_is_in_the_band(make_cfg, tiny_net, tiny_loader) -> None:
    cfg = make_cfg(*MICRO, "search.arch_optim=adam", "search.arch_adam_lr=0.1")
    target = _cell_target(make_cfg, 1500)  # near the cheapest micro cell (1443); uniform alpha ~ 1940
    torch.manual_seed(0)
    net = tiny_net(num_classes=19)
    w_opt, a_opt = build_optimizers(net.weight_parameters(), net.arch_parameters(), cfg.search)
    weights = lambda: F.softmax(net.alpha, dim=-1)  # noqa: E731
    architect = Architect(net, F.cross_entropy, w_opt, a_opt, penalty=lambda: target.penalty(weights()))
    start = float(target.cost.expected(weights().detach()))
    x, y = next(iter(tiny_loader(num_classes=19)))
    for _ in range(40):
        architect.arch_step((x, y))
    end = float(target.cost.expected(weights().detach()))
    assert not target.target.within(start) and target.target.within(end) and end < start


def test_second_order_adds_the_penalty_gradient(tiny_net, tiny_loader) -> None:
    torch.manual_seed(0)
    net = tiny_net()
    batch = tuple(next(iter(tiny_loader())))
    extra = lambda: 3.0 * net.alpha[0, 0]  # noqa: E731
    grads = []
    for penalty in (None, extra):
        opts = torch.optim.SGD(net.weight_parameters(), lr=0.0), torch.optim.SGD(net.arch_parameters(), lr=0.0)
        Architect(net, F.cross_entropy, *opts, second_order=True, penalty=penalty).arch_step(batch, batch)
        grads.append(net.alpha.grad.clone())
    assert grads[1][0, 0] - grads[0][0, 0] == pytest.approx(3.0, abs=1e-4)
    assert torch.allclose(grads[1][1:], grads[0][1:])


def test_selection_is_the_best_cell_within_the_band(make_cfg) -> None:
    target = _cell_target(make_cfg, 2000)
    torch.manual_seed(1)
    for _ in range(5):
        weights = F.softmax(torch.randn(3, 5) * 2, dim=-1).tolist()
        ops, info = target.select(weights)
        inside = [c for c in itertools.product(PRIMITIVES, repeat=3) if target.target.within(target.cost.of_ops(c))]
        scores = {c: sum(math.log(weights[e][PRIMITIVES.index(op)]) for e, op in enumerate(c)) for c in inside}
        assert tuple(ops) == max(inside, key=scores.__getitem__) and target.target.within(target.cost.of_ops(ops))
        assert info["held_to_band"] == (list(ops) != info["argmax_ops"])
    ops, info = target.select([[1.0 if p == "conv_3x3" else 0.0 for p in PRIMITIVES]] * 3)  # argmax in band: kept
    assert ops == info["argmax_ops"] == ["conv_3x3"] * 3 and not info["held_to_band"]


def test_a_tiny_search_with_target_params_gives_a_derived_net_within_the_band(make_cfg, tmp_path: Path) -> None:
    target = 1600  # micro's derived nets span 1443-2979 params; uniform alpha's argmax lands anywhere in it
    cfg = make_cfg(*MICRO, "trainer.max_epochs=2", f"search.target_params={target}", out=tmp_path / "s")
    result = run_cell_search(cfg)
    genotype = Genotype.load(tmp_path / "s" / "genotype.json")
    params = count_params(cfg, genotype, default_macro(cfg))
    assert abs(params / target - 1) <= BAND
    block = genotype.search["target"]
    assert block["metric"] == "params" and block["value"] == target and block["derived"] == params
    assert block["within_band"] and block["macro"] == "default_macro" and block["expected"] > 0
    assert result["target"] == block


def test_a_tiny_search_with_target_gmacs_gives_a_derived_net_within_the_band(make_cfg, tmp_path: Path) -> None:
    base = make_cfg(*MICRO)
    cost = CellCost.build(Layout.from_cfg(base), default_macro(base), mac_price)
    target = cost.all_costs()[10]  # a cheap cell's GMACs: uniform alpha's argmax seldom lands near it
    cfg = make_cfg(*MICRO, "trainer.max_epochs=2", f"search.target_gmacs={target}", out=tmp_path / "s")
    run_cell_search(cfg)
    genotype = Genotype.load(tmp_path / "s" / "genotype.json")
    gmacs = net_cost(Layout.from_cfg(cfg), genotype.ops, default_macro(cfg), mac_price)
    assert abs(gmacs / target - 1) <= BAND
    block = genotype.search["target"]
    assert block["metric"] == "gmacs" and block["derived"] == pytest.approx(gmacs) and block["within_band"]


def test_search_target_errors_are_one_line(make_cfg) -> None:
    with pytest.raises(ConfigError, match="both set; a search targets one cost at a time"):
        CellTarget.from_cfg(make_cfg(*MICRO, "search.target_params=2000", "search.target_latency_ms=5"))
    with pytest.raises(ConfigError, match=r"search.target_params=2000 and search.target_gmacs=0.1 are both set"):
        CellTarget.from_cfg(make_cfg(*MICRO, "search.target_params=2000", "search.target_gmacs=0.1"))
    with pytest.raises(ConfigError, match=r"search.target_gmacs=-1 is invalid"):
        CellTarget.from_cfg(make_cfg(*MICRO, "search.target_gmacs=-1"))
    with pytest.raises(ConfigError, match=r"cannot be reached by any cell: .* span 1443 to 2979 params, the nearest"):
        CellTarget.from_cfg(make_cfg(*MICRO, "search.target_params=100"))
    # inside the span but in a gap between the 125 cells' costs (tiny: 67907 and 105707 params)
    with pytest.raises(ConfigError, match="the nearest to the target 67907 and 105707 "):
        CellTarget.from_cfg(make_cfg("stage=cell_search", "model=tiny", "search.target_params=86000"))
    assert CellTarget.from_cfg(make_cfg(*MICRO)) is None


def test_sample_arch_at_a_target_and_its_errors(make_cfg) -> None:
    base = ("stage=sample_arch", "model=tiny", "sample.pictures=false")
    free = sorted(sample_architecture(make_cfg(*base), seed)[2]["params"] for seed in range(10))
    x = free[2]
    cfg = make_cfg(*base, f"search.target_params={x}")
    for seed in range(3):
        _, _, info = sample_architecture(cfg, seed)
        assert abs(info["params"] / x - 1) <= BAND and info["target"]["cost"] == info["params"]
    assert any(abs(p / x - 1) > BAND for p in free)  # the target really rejected draws
    with pytest.raises(ConfigError, match=r"no draw within \+-10% of 10 in 20 tries .* spanned \d+ to \d+"):
        sample_architecture(make_cfg(*base, "search.target_params=10", "sample.max_tries=20"), 0)
    with pytest.raises(ConfigError, match="sample.param_match=100 and search.target_params=10 are both set"):
        sample_architecture(make_cfg(*base, "search.target_params=10", "sample.param_match=100"), 0)
    with pytest.raises(ConfigError, match="search.target_params=-5 is invalid"):
        from rspnet.utils.validate import validate_config

        validate_config(make_cfg(*base, "search.target_params=-5"))
