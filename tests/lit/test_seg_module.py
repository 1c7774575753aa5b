"""SegModule pieces: losses (CE, OHEM, aux), poly schedule, checkpoint loading errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rspnet.errors import ArtifactError
from rspnet.lit.seg_module import SegModule, aux_weight, loss_options, poly_lambda
from rspnet.losses import ohem_cross_entropy, seg_loss


def _module(cfg, num_classes: int = 5):
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.stages.train import training_architecture

    torch.manual_seed(0)
    genotype, macro = training_architecture(cfg)
    return build_seg_module(cfg, genotype, macro, num_classes)


@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_loss_is_finite_and_decreases_on_a_fixed_batch(tiny_cfg, head: str) -> None:
    cfg = tiny_cfg(f"head={head}", "train.ohem=true", "train.ohem_min_kept=64")
    module = _module(cfg)
    # blocky scenes whose class is a function of the colour: learnable in a few steps
    x = F.interpolate(torch.randn(2, 3, 4, 4), size=(32, 32), mode="nearest")
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    y[:, :4] = 255  # some ignored pixels
    opt = torch.optim.SGD(module.net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):  # OCR on the HRNet-style default_macro is noisier over the first 10 steps
        loss = seg_loss(module(x), y, 255, aux_weight=module.aux_weight, **loss_options(cfg.train))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.8 * losses[0]


def test_ocr_aux_loss_is_weighted_by_head_default_or_train_override(tiny_cfg) -> None:
    assert aux_weight(tiny_cfg("head=ocr")) == pytest.approx(0.4)
    assert aux_weight(tiny_cfg("head=ocr", "train.aux_weight=0.25")) == pytest.approx(0.25)
    assert aux_weight(tiny_cfg("head=fcn")) == 0.0
    logits, aux = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    y = torch.randint(0, 3, (1, 4, 4))
    assert loss_options(tiny_cfg().train) == {"ohem": False}
    assert loss_options(tiny_cfg("train.ohem=true", "train.ohem_min_kept=64").train) == {
        "ohem": True,
        "thresh": 0.7,
        "min_kept": 64,
    }
    expected = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    assert torch.allclose(seg_loss({"out": logits, "aux": aux}, y, 255, aux_weight=0.4), expected)


def test_ohem_keeps_hard_pixels_and_at_least_min_kept() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 8, 8)
    y = torch.randint(0, 4, (1, 8, 8))
    full = F.cross_entropy(logits, y)
    assert torch.allclose(ohem_cross_entropy(logits, y, 255, thresh=1.0, min_kept=1), full)
    pixel = F.cross_entropy(logits, y, reduction="none").flatten()
    # threshold ~0 keeps exactly the min_kept hardest pixels
    assert torch.allclose(ohem_cross_entropy(logits, y, 255, thresh=1e-9, min_kept=10), pixel.topk(10).values.mean())
    assert ohem_cross_entropy(logits, torch.full_like(y, 255), 255, 0.7, 10).item() == 0.0


def test_poly_schedule() -> None:
    f = poly_lambda(100, 0.9)
    assert f(0) == 1.0 and f(100) == 0.0 and f(150) == 0.0
    assert f(50) == pytest.approx(0.5**0.9)


def test_from_checkpoint_errors(trained: dict, tmp_path) -> None:
    with pytest.raises(ArtifactError, match="checkpoint not found"):
        SegModule.from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="junk.ckpt: cannot read checkpoint"):
        SegModule.from_checkpoint(tmp_path / "junk.ckpt")
    ckpt = torch.load(trained["best_ckpt"], map_location="cpu", weights_only=True)
    torch.save({"state_dict": ckpt["state_dict"]}, tmp_path / "plain.ckpt")
    with pytest.raises(ArtifactError, match="not an rspnet training checkpoint"):
        SegModule.from_checkpoint(tmp_path / "plain.ckpt")
    ckpt["rspnet"]["config"]["model"]["cells_per_node"] = 1  # metadata no longer matches the weights
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(ArtifactError, match=r"other.ckpt: weights do not fit.*unexpected: .*cells\.1\."):
        SegModule.from_checkpoint(tmp_path / "other.ckpt")


def test_checkpoint_alone_rebuilds_the_trained_network(trained: dict, tiny_cfg) -> None:
    module, meta = SegModule.from_checkpoint(trained["best_ckpt"])
    # a config with another preset does not change the rebuilt network: the checkpoint wins
    other, _ = SegModule.from_checkpoint(trained["best_ckpt"], tiny_cfg("model.base_width=16"))
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(module(x)["out"], other(x)["out"])
    assert meta["classes"][0] == "road" and len(meta["palette"]) == 19


def test_non_finite_loss_stops_with_a_clear_error(tiny_cfg) -> None:
    from rspnet.errors import NonFiniteError

    module = _module(tiny_cfg())
    x = torch.full((2, 3, 32, 32), float("nan"))
    with pytest.raises(NonFiniteError, match="training loss is nan"):
        module.training_step((x, torch.zeros(2, 32, 32, dtype=torch.long)), 0)
