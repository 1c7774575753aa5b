"""rspnet.losses and rspnet.data.stats: class weights from counts, weighted CE by hand, OHEM on the final output only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rspnet.data.stats import (
    enet_weights,
    median_frequency_weights,
    read_stats_file,
    resolve_class_weights,
    weights_from_stats,
)
from rspnet.errors import ConfigError
from rspnet.losses import ohem_cross_entropy, seg_loss


def test_median_frequency_weights_by_hand() -> None:
    # class 0: 60 px in images totalling 100 labelled px -> freq 0.6; class 1: 10 / 100 -> 0.1;
    # class 2: 30 / 50 -> 0.6; class 3 absent. median(0.6, 0.1, 0.6) = 0.6
    w = median_frequency_weights([60, 10, 30, 0], [100, 100, 50, 0])
    assert w == pytest.approx([1.0, 6.0, 1.0, 0.0])
    # even count: median of (0.1, 0.2, 0.4, 0.8) = 0.3
    assert median_frequency_weights([1, 2, 4, 8], [10, 10, 10, 10]) == pytest.approx([3.0, 1.5, 0.75, 0.375])


def test_enet_weights_by_hand() -> None:
    # p = 0.75, 0.25, 0 -> 1/ln(1.77), 1/ln(1.27), 1/ln(1.02)
    w = enet_weights([75, 25, 0])
    assert w == pytest.approx([1 / math.log(1.77), 1 / math.log(1.27), 1 / math.log(1.02)])
    assert w[2] == pytest.approx(50.5, abs=0.01)  # the cap for an absent class
    stats = {"pixels_per_class": [75, 25, 0], "pixels_of_images_with_class": [100, 100, 0]}
    assert weights_from_stats(stats, "enet") == w
    with pytest.raises(ConfigError, match="train.class_weighting=inverse"):
        weights_from_stats(stats, "inverse")


def test_weighted_ce_equals_hand_computation_with_ignore() -> None:
    # 1 image, 2 classes, 1x3 pixels: targets 0, 1, ignore
    logits = torch.tensor([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, -5.0]]]])
    target = torch.tensor([[[0, 1, 255]]])
    w = torch.tensor([1.0, 3.0])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 1))  # pixel 0, class 0
    nll1 = -math.log(math.e / (1 + math.e))  # pixel 1, class 1
    expected = (1.0 * nll0 + 3.0 * nll1) / (1.0 + 3.0)  # torch's weighted mean; the ignored pixel drops out
    assert seg_loss({"out": logits}, target, 255, weight=w).item() == pytest.approx(expected, rel=1e-5)
    assert seg_loss({"out": logits}, target, 255).item() == pytest.approx((nll0 + nll1) / 2, rel=1e-5)
    # OHEM with weights keeps every pixel at thresh 1: mean of the weighted pixel losses (HRNet-OCR)
    ohem = ohem_cross_entropy(logits, target, 255, thresh=1.0, min_kept=1, weight=w)
    assert ohem.item() == pytest.approx((nll0 + 3 * nll1) / 2, rel=1e-5)


def test_ohem_applies_to_the_final_output_only() -> None:
    torch.manual_seed(0)
    out, aux = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    y = torch.randint(0, 4, (2, 6, 6))
    plain_aux = torch.nn.functional.cross_entropy(aux, y)
    for thresh in (1e-6, 0.3, 1.0):
        total = seg_loss({"out": out, "aux": aux}, y, 255, ohem=True, thresh=thresh, min_kept=1, aux_weight=0.4)
        final = ohem_cross_entropy(out, y, 255, thresh, 1)
        assert total.item() == pytest.approx(final.item() + 0.4 * plain_aux.item(), rel=1e-5)
    # the threshold changes the final term, so the check above is not vacuous
    assert ohem_cross_entropy(out, y, 255, 1e-6, 1) != ohem_cross_entropy(out, y, 255, 1.0, 1)


def _stats_file(path: Path, k: int) -> Path:
    train = {"pixels_per_class": [10 * (i + 1) for i in range(k)], "pixels_of_images_with_class": [100] * k}
    path.write_text(json.dumps({"splits": {"train": train}}))
    return path


def test_stats_path_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"train.class_weights={missing}: file not found"):
        read_stats_file(missing, 3)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=f"train.class_weights={bad}: .*not valid JSON"):
        read_stats_file(bad, 3)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"splits": {"train": {"pixels_per_class": [1, 2, 3]}}}))
    with pytest.raises(ConfigError, match=f"train.class_weights={old}: .*re-run stage=data_stats"):
        read_stats_file(old, 3)
    with pytest.raises(ConfigError, match="another number of classes"):
        read_stats_file(_stats_file(tmp_path / "k4.json", 4), 3)
    assert read_stats_file(_stats_file(tmp_path / "k3.json", 3), 3)["pixels_per_class"] == [10, 20, 30]


def test_train_stage_stops_on_a_bad_weights_path(tiny_cfg, tmp_path: Path) -> None:
    from rspnet.stages.train import run as run_train

    missing = tmp_path / "missing_stats.json"
    # ConfigError is what the CLI prints as one `rspnet: error: ...` line
    with pytest.raises(ConfigError, match=f"^train.class_weights={missing}: file not found"):
        run_train(tiny_cfg("stage=train", f"train.class_weights={missing}"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_auto_weights_count_the_training_images_and_are_cached(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.data.stats import count_pixels

    cfg = make_cfg(
        "dataset.num_train=6", "dataset.image_size=[16,32]", "train.class_weights=auto", "train.class_weighting=enet"
    )
    dm = build_datamodule(cfg)
    dm.setup("fit")
    weights = resolve_class_weights(cfg, dm, tmp_path)
    cached = json.loads((tmp_path / "class_stats.json").read_text())
    assert cached["key"]["indices"] == dm.fit_indices() and len(dm.fit_indices()) == 5  # held-out image excluded
    from rspnet.data import build_dataset

    counts = count_pixels(build_dataset(cfg, "train", train=False), 1, indices=dm.fit_indices())
    assert weights == pytest.approx(enet_weights([int(v) for v in counts[0, :-1]]))
    assert resolve_class_weights(make_cfg("train.class_weights=none"), dm, tmp_path) is None
