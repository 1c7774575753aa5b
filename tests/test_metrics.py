"""SegMetric: confusion-matrix mIoU equal to cityscapesscripts' evaluator; edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet.data.cityscapes import CLASSES, LABELID_LUT, trainid_to_labelid
from rspnet.metrics import SegMetric


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_miou_matches_cityscapes_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    rng = np.random.default_rng(0)
    metric = SegMetric(19)
    gts, preds = [], []
    for i in range(3):
        # GT labelIds 0..31 (voids included): motorcycle (32) and bicycle (33) never in GT
        gt = rng.integers(0, 32, size=(16, 32))
        train_gt = LABELID_LUT[gt]
        # predictions: mostly right, some noise, never motorcycle (17 -> absent from both)
        pred = np.where(rng.random((16, 32)) < 0.6, train_gt, rng.integers(0, 19, size=(16, 32)))
        pred = np.where((pred == 255) | (pred == 17), 0, pred)
        pred[0, :4] = 18  # bicycle predicted but absent from GT -> IoU 0, counted
        name = f"city_{i:06d}_000019"
        gts.append(_png(tmp_path / f"gtFine/val/city/{name}_gtFine_labelIds.png", gt))
        preds.append(_png(tmp_path / f"results/{name}_pred_labelIds.png", trainid_to_labelid(pred)))
        metric.update(torch.from_numpy(pred), torch.from_numpy(train_gt.astype(np.int64)))

    args = cs_eval.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)  # no instanceIds files needed
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    ref = cs_eval.evaluateImgLists(preds, gts, args)
    ours = metric.compute()
    assert float(ours["miou"]) == pytest.approx(ref["averageScoreClasses"], abs=1e-6)
    for c, name in enumerate(CLASSES):
        theirs, mine = ref["classScores"][name], float(ours["iou_per_class"][c])
        assert (math.isnan(theirs) and math.isnan(mine)) or mine == pytest.approx(theirs, abs=1e-6), name
    assert math.isnan(float(ours["iou_per_class"][17])) and float(ours["iou_per_class"][18]) == 0.0


def test_hand_computed_example_ignore_and_absent_classes() -> None:
    metric = SegMetric(4, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1, 255, 255]])
    preds = torch.tensor([[0, 1, 1, 1, 3, 2]])  # preds on ignore pixels do not count
    metric.update(preds, target)
    out = metric.compute()
    # class 0: tp1 fn1 fp0 -> 1/2; class 1: tp2 fp1 -> 2/3; classes 2, 3 absent from both -> nan
    assert out["iou_per_class"][:2].tolist() == pytest.approx([0.5, 2 / 3])
    assert out["iou_per_class"][2:].isnan().all()
    assert float(out["miou"]) == pytest.approx((0.5 + 2 / 3) / 2)
    assert float(out["pixel_acc"]) == pytest.approx(3 / 4)
    # class accuracy (recall): class 0: 1 of 2 GT pixels, class 1: 2 of 2; 2, 3 absent from GT -> NaN
    assert out["iou_per_class"][:2].tolist() == pytest.approx([0.5, 2 / 3]) and out["iou_per_class"][2:].isnan().all()
    assert float(out["macc"]) == pytest.approx(0.75)
    assert out["acc_per_class"][:2].tolist() == [0.5, 1.0] and out["acc_per_class"][2:].isnan().all()
    assert out["confmat"].tolist()[:2] == [[1, 1, 0, 0], [0, 2, 0, 0]]


def test_accumulates_accepts_logits_and_resets() -> None:
    metric = SegMetric(3)
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()  # B, K, H, W
    metric.update(logits, target)
    metric.update(torch.zeros_like(target), target)
    out = metric.compute()
    assert int(metric.confmat.sum()) == 8 and float(out["pixel_acc"]) == pytest.approx(5 / 8)
    metric.reset()
    assert int(metric.confmat.sum()) == 0


def test_rejects_bad_input() -> None:
    metric = SegMetric(3)
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="target holds ids outside 0..2"):
        metric.update(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="preds hold ids outside"):
        metric.update(torch.tensor([[0, 3]]), torch.zeros(1, 2, dtype=torch.long))
