"""Scoring at the label's own resolution (SPEC §6): inputs may be resized, labels never are.

Every path that scores a prediction is checked: stage=eval (test_step), the training and search
modules' validation (select/* and val/*), and the labels the eval datasets return.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rspnet.data import build_datamodule
from rspnet.lit.seg_module import SegModule
from rspnet.metrics import SegMetric
from rspnet.stages.eval import run as run_eval

ROAD, POLE = 3, 2


def _camvid_with_a_one_pixel_pole(root: Path) -> Path:
    """CamVid layout, 16x32 frames: road everywhere but a 1-pixel-wide pole column at x = 5 (val)."""
    label = np.full((16, 32), ROAD, dtype=np.uint8)
    label[:, 5] = POLE  # an odd column: a nearest-neighbour 2x downscale (even columns) drops it
    for split, name in (("train", "0001TP_000010.png"), ("train", "0001TP_000040.png"), ("val", "0016E5_07959.png")):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        rgb = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / split / name)
        Image.fromarray(label).save(root / f"{split}annot" / name)
    return root


class RoadEverywhere(nn.Module):
    """Logits at the input's size that say `road` at every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 11, *x.shape[-2:])
        logits[:, ROAD] = 1.0
        return logits


@pytest.mark.parametrize("resize", ["dataset.resize_long=16", "dataset.eval_scale=0.5"])
def test_eval_scores_a_one_pixel_class_at_the_label_resolution(make_cfg, tmp_path: Path, resize: str) -> None:
    root = _camvid_with_a_one_pixel_pole(tmp_path / "camvid")
    cfg = make_cfg("dataset=camvid", f"dataset.root={root}", "dataset.num_workers=0", resize)
    dm = build_datamodule(cfg)
    dm.setup("test")
    module = SegModule(RoadEverywhere(), cfg.train, 255, {"num_classes": 11})
    for x, y in dm.test_dataloader():
        assert x.shape[-2:] == (8, 16) and y.shape[-2:] == (16, 32)  # the network sees half size
        module.test_step((x, y), 0)
    res = module.test_metric.compute()
    cm = res["confmat"]
    # every labelled pixel of the 32x16 file is scored, the pole column included (a resized label
    # would have lost it and scored this prediction as perfect)
    assert int(cm.sum()) == 16 * 32 and int(cm[POLE].sum()) == 16 and int(cm[POLE, POLE]) == 0
    assert float(res["miou"]) == pytest.approx(((16 * 32 - 16) / (16 * 32) + 0.0) / 2)


def _spy_targets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes of every target that reaches SegMetric.update from now on."""
    seen: list[tuple[int, ...]] = []
    update = SegMetric.update

    def spy(self: SegMetric, preds: torch.Tensor, target: torch.Tensor) -> None:
        seen.append(tuple(target.shape[-2:]))
        update(self, preds, target)

    monkeypatch.setattr(SegMetric, "update", spy)
    return seen


@pytest.mark.parametrize("stage", ["train", "cell_search"])
def test_validation_scores_at_the_label_resolution(tiny_cfg, monkeypatch, stage: str) -> None:
    """select/* and val/* (training) and the search's select/*: synthetic 32x64 labels, inputs at 16x32."""
    from rspnet.stages import run_stage

    seen = _spy_targets(monkeypatch)
    overrides = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "dataset.resize_long=32")
    if stage == "cell_search":
        overrides += ("model=micro", "train.holdout_fraction=0.25")  # 2 held-out images: a search batch of 2
    run_stage(tiny_cfg(f"stage={stage}", *overrides))
    assert seen and set(seen) == {(32, 64)}


def test_eval_stage_counts_every_pixel_of_the_label_files(trained: dict, tiny_cfg) -> None:
    """stage=eval with the inputs at half size: the confusion matrix counts the labels' 32x64 pixels."""
    cfg = tiny_cfg("stage=eval", f"ckpt={trained['best_ckpt']}", "dataset.resize_long=32", "inference=slide")
    with_resize = run_eval(cfg)
    cm = np.asarray(json.loads((Path(cfg.paths.output_dir) / "confusion_matrix.json").read_text())["counts"])
    assert cm.sum() == 4 * 32 * 64 and with_resize["num_images"] == 4


def test_eval_scale_applies_to_predict_inputs_and_keeps_file_size() -> None:
    from rspnet.data.images import prepare

    rgb = np.zeros((36, 48, 3), dtype=np.uint8)
    x = prepare(rgb, resize_long=None, eval_scale=0.5)
    assert x.shape == (3, 18, 24)


def test_wandb_prediction_pictures_are_drawn_at_the_label_resolution(monkeypatch) -> None:
    from types import SimpleNamespace

    from rspnet.utils import wandb_media

    shown: list[tuple[int, ...]] = []
    monkeypatch.setattr(wandb_media, "log_image", lambda loggers, key, image, step=None: shown.append(image.shape))
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, loggers=[], global_step=0)
    module = RoadEverywhere()
    module.meta = {"palette": [[i, i, i] for i in range(11)]}
    batch = (torch.zeros(2, 3, 8, 16), torch.full((2, 16, 32), ROAD))
    wandb_media.WandbMedia(Path("."), num_images=2).on_validation_batch_end(trainer, module, None, batch, 0)
    assert shown == [(16, 64, 3)] * 2  # prediction | ground truth, each 16x32
