"""stage=profile: params, GMACs (= GFLOPs / 2) and timing for a checkpoint, an ONNX file and a zoo entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rspnet.errors import ConfigError
from rspnet.stages.profile import run as run_profile

FAST = ["stage=profile", "stage.size=[64,96]", "stage.warmup=1", "stage.repeats=3", "stage.device=cpu"]


def test_profile_checkpoint_and_its_onnx_export_agree(tiny_ckpt: Path, make_cfg, tmp_path: Path) -> None:
    from rspnet.api import load_model
    from rspnet.models.cost import count_gflops
    from rspnet.stages.export import run as run_export

    result = run_profile(make_cfg(*FAST, f"ckpt={tiny_ckpt}", "stage.batch_size=2", out=tmp_path / "p"))
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    net = load_model(tiny_ckpt).net
    assert report["params"] == result["params"] == sum(p.numel() for p in net.parameters())
    assert report["gmacs"] == pytest.approx(count_gflops(net, (64, 96)) / 2, abs=1e-3)
    assert report["gflops"] == pytest.approx(2 * report["gmacs"], abs=2e-3)
    assert len(report["latency_ms_all"]) == 3 and report["latency_ms"] > 0
    assert report["images_per_s"] == pytest.approx(2000 / report["latency_ms"], rel=1e-3)
    assert report["device"] == "cpu" and report["precision"] == "fp32" and report["input_size"] == [64, 96]

    run_export(make_cfg("stage=export", f"ckpt={tiny_ckpt}", "stage.size=[64,64]", out=tmp_path / "x"))
    onnx = run_profile(make_cfg(*FAST, f"ckpt={tmp_path / 'x' / 'model.onnx'}", out=tmp_path / "o"))
    assert onnx["kind"] == "onnx" and onnx["latency_ms"] > 0
    # the graph's Conv/MatMul count equals torch's flop counter (BN folding keeps the convs' MACs)
    assert onnx["gmacs"] == pytest.approx(report["gmacs"], rel=0.02)
    assert onnx["params"] == pytest.approx(report["params"], rel=0.05)  # BN folded: fewer stored weights


def test_profile_zoo_and_bad_options(make_cfg, tmp_path: Path) -> None:
    zoo = run_profile(make_cfg(*FAST, "ckpt=zoo:paper_like-tiny", out=tmp_path / "z"))
    assert zoo["kind"] == "zoo" and zoo["trained"] is False and zoo["gmacs"] > 0
    with pytest.raises(ConfigError, match="fp16"):
        run_profile(make_cfg(*FAST, "stage.precision=fp16", out=tmp_path / "f"))
    with pytest.raises(ConfigError, match="stage.precision=int8"):
        run_profile(make_cfg(*FAST, "stage.precision=int8", out=tmp_path / "i"))
