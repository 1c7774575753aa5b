"""Checkpoint format: old (rspnet.seg/1) checkpoints still load; the metadata describes the injected net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rspnet.errors import ArtifactError
from rspnet.lit.seg_module import SegModule
from rspnet.utils.checkpoint import CKPT_FORMAT, read_checkpoint, seg_meta

FIXTURES = Path(__file__).parent / "fixtures"
# written by stage=train at commit a096c64 (tiny preset, OCR head, 19 classes; callback paths removed),
# with the logits it gave there on `_input()`
OLD_CKPT = FIXTURES / "seg_v1_a096c64.ckpt"
OLD_LOGITS = FIXTURES / "seg_v1_a096c64_logits.pt"


def _input() -> torch.Tensor:
    return torch.randn(1, 3, 16, 32, generator=torch.Generator().manual_seed(0))


def test_a_checkpoint_of_format_1_loads_and_gives_its_logits() -> None:
    module, meta = SegModule.from_checkpoint(OLD_CKPT)
    assert meta["format"] == "rspnet.seg/1" and "net" not in meta
    with torch.no_grad():
        out = module(_input())["out"]
    recorded = torch.load(OLD_LOGITS, weights_only=True)["out"]
    # another CPU rounds differently (measured 1.7e-7 of the largest |logit| with kernels capped to SSE4.1);
    # 1e-5 of it passes that and fails a real change (~1e-3)
    torch.testing.assert_close(out, recorded, rtol=0.0, atol=1e-5 * float(recorded.abs().max()))


def test_an_unknown_format_version_is_one_clear_error(tmp_path: Path) -> None:
    ckpt = read_checkpoint(OLD_CKPT)
    ckpt["rspnet"]["format"] = "rspnet.seg/9"
    torch.save(ckpt, tmp_path / "future.ckpt")
    with pytest.raises(ArtifactError, match=r"future.ckpt: checkpoint format rspnet.seg/9 is not one this rspnet"):
        SegModule.from_checkpoint(tmp_path / "future.ckpt")


class Baseline(nn.Module):
    """A non-rspnet network: one 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_an_injected_net_is_what_the_checkpoint_describes(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg("dataset.num_classes=19")
    net = Baseline()
    meta = seg_meta(cfg, net, 4, description="one 1x1 conv")
    module = SegModule(net, cfg.train, 255, meta)
    assert module.net is net and meta["format"] == CKPT_FORMAT
    assert meta["params"] == 16 and meta["net"]["class"].endswith("test_checkpoint_format.Baseline")
    assert meta["net"]["builder"] is None and meta["arch_provenance"] == {"genotype": None, "macro": None}
    torch.save({"state_dict": module.state_dict(), "rspnet": meta}, tmp_path / "baseline.ckpt")
    # eval/predict/export rebuild only rspnet nets: anything else is one line naming what the file holds
    with pytest.raises(ArtifactError, match=r"baseline.ckpt: holds a .*Baseline network, not one of the net group"):
        SegModule.from_checkpoint(tmp_path / "baseline.ckpt")


def test_a_trained_checkpoint_describes_the_derived_net(trained: dict) -> None:
    meta = read_checkpoint(trained["best_ckpt"])["rspnet"]
    assert meta["format"] == CKPT_FORMAT and meta["net"]["builder"] == "rspnet.models.derived"
    module, _ = SegModule.from_checkpoint(trained["best_ckpt"])
    assert meta["net"]["class"] == f"{type(module.net).__module__}.{type(module.net).__qualname__}"
    assert meta["params"] == sum(p.numel() for p in module.net.parameters())
