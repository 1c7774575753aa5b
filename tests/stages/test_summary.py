"""stage=summary: schema, counts that match a real model, GFLOPs scaling, paper preset targets."""

from __future__ import annotations

import json

import pytest
import torch

from rspnet.architecture import PAPER_GENOTYPE
from rspnet.genotype import Genotype
from rspnet.models.cost import count_gflops
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.stages.summary import run as run_summary


def test_summary_json_schema_and_counts_match_a_real_model(make_cfg, tmp_path) -> None:
    cfg = make_cfg("stage=summary", "head=ocr", out=tmp_path / "s")
    result = run_summary(cfg)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert {"params", "params_by_part", "gflops", "input_size"} <= set(summary)
    assert set(summary["params_by_part"]) == {"stem", "trellis", "head"}
    assert summary["params"] == sum(summary["params_by_part"].values()) == result["params"]
    assert summary["input_size"] == list(cfg.dataset.crop_size)
    assert summary["gflops"] > 0
    real = DerivedNet.from_cfg(cfg, Genotype.load(PAPER_GENOTYPE), default_macro(cfg), cfg.dataset.num_classes)
    assert summary["params"] == sum(p.numel() for p in real.parameters())


def test_summary_uses_the_given_genotype(make_cfg, tmp_path) -> None:
    path = Genotype.from_ops(["skip_connect"] * 3, rsp=True).save(tmp_path / "skip.json")  # all skip_connect
    cheap = run_summary(make_cfg("stage=summary", f"genotype={path}", out=tmp_path / "a"))
    default = run_summary(make_cfg("stage=summary", out=tmp_path / "b"))
    assert cheap["genotype_ops"] == ["skip_connect"] * 3
    assert cheap["params_by_part"]["trellis"] < default["params_by_part"]["trellis"]


def test_gflops_scale_with_pixels(make_cfg) -> None:
    cfg = make_cfg()
    with torch.device("meta"):
        net = DerivedNet.from_cfg(cfg, Genotype.load(PAPER_GENOTYPE), default_macro(cfg), 19)
    small, big = count_gflops(net, (64, 64)), count_gflops(net, (128, 128))
    assert big == pytest.approx(4 * small, rel=0.05)


@pytest.mark.parametrize(("rsp", "target"), [("off", 68.67e6), ("on", 17.20e6)])
def test_paper_preset_matches_table1_within_10_percent(make_cfg, tmp_path, rsp: str, target: float) -> None:
    summary = run_summary(make_cfg("stage=summary", "model=paper", f"rsp={rsp}", out=tmp_path / rsp))
    assert summary["params"] == pytest.approx(target, rel=0.10)


def test_cpu_small_preset_stays_under_enet_size_at_the_camvid_recipe(make_cfg) -> None:
    from rspnet.architecture import load_architecture
    from rspnet.genotype import Genotype
    from rspnet.models.cost import summarize
    from rspnet.models.derived import default_macro

    cfg = make_cfg("experiment=camvid", "model=cpu_small")
    tiny = make_cfg("experiment=camvid")
    paper_like = summarize(cfg, *load_architecture(cfg), flops=False)["params"]
    all_conv = Genotype.from_ops(["conv_3x3"] * 3, rsp=True)  # conv_3x3 on every edge
    heavy = summarize(cfg, all_conv, default_macro(cfg), flops=False)["params"]
    assert summarize(tiny, *load_architecture(tiny), flops=False)["params"] < paper_like < heavy <= 400_000
