"""Resource targets in the macro search (models/macro_cost.py): exact expected cost, penalty on beta, in-band trellis."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from rspnet.genotype import Genotype, MacroArch
from rspnet.models.cost import BAND, count_gflops, count_params
from rspnet.models.derived import DerivedNet
from rspnet.models.macro_cost import MacroTarget
from rspnet.models.macro_supernet import candidate_inputs
from rspnet.stages.macro_search import run as run_macro_search
from rspnet.stages.sample_arch import sample_macro

SCALES, LAYERS = [4, 8, 16, 32], 4
OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]


def _target(make_cfg, value: float, metric: str = "params") -> tuple[MacroTarget, dict, object]:
    cfg = make_cfg("stage=macro_search", "model=tiny", f"model.layers={LAYERS}", f"search.target_{metric}={value}")
    cands = {(l, s): candidate_inputs(l, SCALES, None) for l in range(1, LAYERS + 1) for s in SCALES}
    target = MacroTarget.from_cfg(cfg, OPS, cands)
    assert target is not None
    return target, cands, cfg


def _chosen(macro: MacroArch) -> dict:
    return {(n.layer, n.scale): [(i.layer, i.scale) for i in n.inputs] for n in macro.nodes}


def test_expected_cost_of_a_0_1_choice_is_the_derived_nets_params(make_cfg) -> None:
    target, cands, cfg = _target(make_cfg, 150_000)
    rng = random.Random(0)
    for _ in range(5):
        macro = sample_macro(rng, SCALES, LAYERS, None, 2, {})
        chosen = _chosen(macro)
        probs = {n: torch.tensor([float(c in chosen[n]) for c in cands[n]]) for n in cands}
        params = count_params(cfg, Genotype.from_ops(OPS), macro)
        assert float(target.expected(probs)) == target.cost(macro) == target.choice_cost(chosen) == params


def test_expected_gmacs_of_a_0_1_choice_is_the_derived_nets_count(make_cfg) -> None:
    target, cands, cfg = _target(make_cfg, 0.01, metric="gmacs")
    rng = random.Random(1)
    for _ in range(3):
        macro = sample_macro(rng, SCALES, LAYERS, None, 2, {})
        chosen = _chosen(macro)
        probs = {n: torch.tensor([float(c in chosen[n]) for c in cands[n]], dtype=torch.float64) for n in cands}
        with torch.device("meta"):
            net = DerivedNet.from_cfg(cfg, Genotype.from_ops(OPS), macro, int(cfg.dataset.num_classes))
        gmacs = count_gflops(net, tuple(cfg.dataset.crop_size)) / 2
        assert target.cost(macro) == pytest.approx(gmacs, rel=1e-9)
        assert float(target.expected(probs)) == pytest.approx(gmacs, rel=1e-6)


def test_the_penalty_reaches_beta_and_is_zero_in_the_band(make_cfg) -> None:
    target, cands, _ = _target(make_cfg, 50_000)
    betas = {n: torch.zeros(len(c), requires_grad=True) for n, c in cands.items()}
    penalty = target.penalty(betas)
    penalty.backward()
    assert float(penalty.detach()) > 0 and any(b.grad.abs().sum() > 0 for b in betas.values())
    expected = float(target.expected(target.probs(betas)).detach())
    inside, _, _ = _target(make_cfg, expected)
    assert float(inside.penalty(betas).detach()) == 0


def test_the_trellis_is_held_to_the_band_by_swaps(make_cfg) -> None:
    rng = random.Random(1)
    macro = sample_macro(rng, SCALES, LAYERS, None, 2, {"seed": 1})
    target, cands, cfg = _target(make_cfg, 1.0)
    by_score = target.cost(macro)
    for value in (0.5 * by_score, 1.15 * by_score, by_score):  # greedy swaps reach 42.5k-172.5k here
        target, cands, cfg = _target(make_cfg, value)
        scores = {n: [rng.random() for _ in c] for n, c in cands.items()}
        betas = {n: torch.zeros(len(c)) for n, c in cands.items()}
        held = target.apply(macro, scores, betas)
        block = held.search["target"]
        params = count_params(cfg, Genotype.from_ops(OPS), held)
        assert block["derived"] == params and abs(params / value - 1) <= BAND and block["within_band"]
        assert block["by_score_cost"] == by_score and block["held_to_band"] == (value != by_score)
        assert held.search["seed"] == 1 and MacroArch.from_dict(held.to_dict(), source="test").nodes == held.nodes


def test_macro_search_with_a_target_writes_it_into_macro_json(make_cfg, tmp_path: Path) -> None:
    genotype = tmp_path / "genotype.json"
    Genotype.from_ops(OPS).save(genotype)
    cfg = make_cfg(
        "stage=macro_search",
        "debug=tiny",
        "model=tiny",
        "trainer.max_epochs=1",
        f"genotype={genotype}",
        "search.target_params=100000",
        out=tmp_path / "m",
    )
    result = run_macro_search(cfg)
    macro = MacroArch.load(tmp_path / "m" / "macro.json")
    params = count_params(cfg, Genotype.load(genotype), macro)
    block = macro.search["target"]
    assert block == result["target"] and block["derived"] == params and block["value"] == 100_000
    assert block["within_band"] and abs(params / 100_000 - 1) <= BAND
