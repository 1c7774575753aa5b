"""stage=export: ONNX with dynamic H, W, BN folded, onnxruntime parity; failures are ArtifactErrors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rspnet.architecture import PAPER_GENOTYPE
from rspnet.errors import ArtifactError
from rspnet.genotype import Genotype
from rspnet.models.derived import default_macro
from rspnet.stages.export import run as run_export


def _checkpoint(cfg, path: Path) -> Path:
    """A stage=train-style checkpoint of a tiny OCR net with non-trivial BN statistics."""
    from rspnet.lit.seg_module import build_seg_module

    torch.manual_seed(0)
    module = build_seg_module(cfg, Genotype.load(PAPER_GENOTYPE), default_macro(cfg), num_classes=5)
    module.net.train()
    with torch.no_grad():
        for _ in range(2):  # moves BN running stats away from (0, 1) so folding is really exercised
            module.net(torch.randn(2, 3, 64, 64) * 2 + 0.5)
    torch.save({"state_dict": module.state_dict(), "rspnet": module.meta}, path)
    return path


@pytest.fixture
def ckpt(make_cfg, tmp_path: Path) -> Path:
    return _checkpoint(make_cfg("head=ocr"), tmp_path / "last.ckpt")


def test_export_onnx_parity_dynamic_size(make_cfg, ckpt: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "export"
    report = run_export(make_cfg("stage=export", "head=ocr", f"ckpt={ckpt}", out=out))
    saved = json.loads((out / "export.json").read_text())
    assert saved["passed"] and saved["max_abs_diff"] <= 1e-3 == saved["tolerance"]
    assert saved["check_size"] != saved["export_size"]
    assert saved["batchnorm_nodes"] == 0  # every BN folded into its conv
    assert report["num_classes"] == 5
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": np.random.rand(1, 3, 50, 70).astype(np.float32)})[0]
    assert logits.shape == (1, 5, 50, 70)


def test_failed_parity_is_an_artifact_error_and_writes_no_onnx(make_cfg, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(ArtifactError, match="differ from PyTorch"):
        run_export(make_cfg("stage=export", f"ckpt={ckpt}", "stage.tolerance=-1", out=out))
    assert not (out / "model.onnx").exists()
    assert json.loads((out / "export.json").read_text())["passed"] is False


def test_export_needs_a_checkpoint(make_cfg, tmp_path: Path) -> None:
    from rspnet.errors import ConfigError

    with pytest.raises(ConfigError, match="ckpt"):
        run_export(make_cfg("stage=export"))
    with pytest.raises(ArtifactError, match="not found"):
        run_export(make_cfg("stage=export", f"ckpt={tmp_path / 'nope.ckpt'}"))
