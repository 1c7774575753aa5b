"""The CamVid comparison script: the library baseline builds, and the whole script runs (quick)."""

from __future__ import annotations

import pytest
import torch

from bench import camvid_baseline


def test_baseline_is_a_library_unet_with_class_logits():
    net = camvid_baseline.baseline_net(11)
    assert type(net).__module__.startswith("monai.")
    out = net(torch.randn(1, 3, 32, 48))
    assert out.shape == (1, 11, 32, 48)


@pytest.mark.slow
def test_quick_run_compares_both_models(tmp_path, capsys):
    assert camvid_baseline.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "rspnet (searched" in text and "MONAI BasicUNet" in text
    assert (tmp_path / "rspnet" / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_same_time_budget_reuses_the_rspnet_run(tmp_path, capsys):
    assert camvid_baseline.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (
        camvid_baseline.main(["--quick", "--threads", "1", "--out", str(tmp_path), "--reuse-rspnet", "--same-time"])
        == 0
    )
    text = capsys.readouterr().out
    assert "whole wall time" in text and "MONAI BasicUNet" in text


def test_reuse_rspnet_reads_the_earlier_run(tmp_path):
    import json

    (tmp_path / "train").mkdir(parents=True)
    (tmp_path / "pipeline.json").write_text(
        json.dumps({"miou": 0.3, "params": 1000, "seconds": {"a": 60.0, "b": 30.0}})
    )
    (tmp_path / "train" / "train.json").write_text(json.dumps({"epochs": 4}))
    row = camvid_baseline.reuse_rspnet(tmp_path)
    assert row["seconds"] == 90.0 and row["train_epochs"] == 4 and row["miou"] == 0.3
