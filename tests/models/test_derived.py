"""Derived network: shapes, gradients, RSP, macro handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError
from rspnet.genotype import Genotype, MacroArch
from rspnet.models.derived import DerivedNet, default_macro, live_nodes

# every op type once, so every primitive's parameters are exercised by the grad test
OPS = ["conv_5x5", "dw_conv_3x3", "dil_conv_3x3"]


def _genotype() -> Genotype:
    return Genotype.from_ops(OPS, rsp=True)


def _net(cfg, macro: MacroArch | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return DerivedNet.from_cfg(cfg, _genotype(), macro or default_macro(cfg), num_classes=5)


@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_every_parameter_gets_a_finite_grad(make_cfg, head: str) -> None:
    net = _net(make_cfg(f"head={head}"))
    out = net(torch.randn(2, 3, 32, 48))
    loss = out["out"].logsumexp(1).mean() + sum(v.square().mean() for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no/non-finite grad: {missing[:5]}"


def test_ocr_has_aux_and_fcn_does_not(make_cfg) -> None:
    x = torch.randn(1, 3, 32, 32)
    fcn = _net(make_cfg("head=fcn")).eval()(x)
    ocr = _net(make_cfg("head=ocr")).eval()(x)
    assert set(fcn) == {"out"} and set(ocr) == {"out", "aux"}
    assert fcn["out"].shape == ocr["out"].shape == ocr["aux"].shape == (1, 5, 32, 32)


@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_odd_input_size_gives_output_at_input_size(make_cfg, head: str) -> None:
    out = _net(make_cfg(f"head={head}")).eval()(torch.randn(1, 3, 67, 93))
    assert all(v.shape[-2:] == (67, 93) for v in out.values())


def test_rsp_on_has_fewer_cell_params_than_off(make_cfg) -> None:
    def count(rsp: str) -> int:
        return sum(p.numel() for p in _net(make_cfg(f"rsp={rsp}")).trellis.parameters())

    on, off = count("on"), count("off")
    assert on < 0.4 * off, (on, off)


def test_default_macro_is_hrnet_style_exchange(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("model.layers=4")
    macro = default_macro(cfg)
    reloaded = MacroArch.load(macro.save(tmp_path / "macro.json"))
    assert reloaded.layers == 4 and reloaded.top_k == 2
    assert {(i.layer, i.scale) for i in macro.node(1, 16).inputs} == {(0, 4)}
    # even layers read the coarser neighbour (coarse -> fine), odd layers the finer one
    assert {(i.layer, i.scale) for i in macro.node(2, 8).inputs} == {(1, 8), (1, 16)}
    assert {(i.layer, i.scale) for i in macro.node(3, 16).inputs} == {(2, 16), (2, 8)}
    assert {(i.layer, i.scale) for i in macro.node(3, 4).inputs} == {(2, 4), (2, 8)}  # no finer scale: coarser
    assert {(i.layer, i.scale) for i in macro.node(2, 32).inputs} == {(1, 32), (1, 16)}
    for s in macro.scales:  # every scale receives from both a coarser and a finer one (ends: the only neighbour)
        srcs = {i.scale for layer in (2, 3) for i in macro.node(layer, s).inputs} - {s}
        assert srcs == {x for x in macro.scales if x in (s // 2, s * 2)}
    assert len(live_nodes(macro)) == 4 * len(macro.scales)
    assert json.loads((tmp_path / "macro.json").read_text())["search"]["source"] == "default_macro"


def _far_macro() -> dict:
    """3 layers, 3 scales; layer-3 nodes read the stem and layer 1 directly (far inputs)."""
    nodes = [{"layer": 1, "scale": s, "inputs": [{"layer": 0, "scale": 4, "score": 1.0}]} for s in (4, 8, 16)]
    nodes += [{"layer": 2, "scale": s, "inputs": [{"layer": 1, "scale": 16, "score": 0.6}]} for s in (4, 8, 16)]
    nodes += [
        {
            "layer": 3,
            "scale": s,
            "inputs": [{"layer": 0, "scale": 4, "score": 0.5}, {"layer": 1, "scale": 8, "score": 0.4}],
        }
        for s in (4, 8, 16)
    ]
    return {"format": "rspnet.macro/1", "layers": 3, "scales": [4, 8, 16], "top_k": 2, "nodes": nodes}


def test_model_from_macro_json_with_far_inputs(make_cfg, tmp_path: Path) -> None:
    import json

    path = tmp_path / "macro.json"
    path.write_text(json.dumps(_far_macro()))
    macro = MacroArch.load(path)
    net = _net(make_cfg("head=ocr"), macro)
    # layer 2 feeds nothing that reaches the output: pruned, so no parameter is left without a grad
    assert live_nodes(macro) == [(1, 8), (3, 4), (3, 8), (3, 16)]
    out = net(torch.randn(1, 3, 40, 56))
    assert out["out"].shape == (1, 5, 40, 56)
    out["out"].mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_macro_json_is_one_clear_error(tmp_path: Path) -> None:
    import json

    bad = _far_macro()
    bad["nodes"][-1]["inputs"][0]["layer"] = 3
    path = tmp_path / "macro.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ArtifactError, match="earlier layers"):
        MacroArch.load(path)


def test_unknown_head_name_is_a_config_error(make_cfg) -> None:
    from rspnet.errors import ConfigError

    with pytest.raises(ConfigError, match="head=psp"):
        _net(make_cfg("head.name=psp"))
