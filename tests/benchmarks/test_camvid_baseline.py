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
