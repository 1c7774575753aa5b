"""stage=data_stats on synthetic data: JSON layout, pool == in-process counts, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rspnet.data import build_dataset
from rspnet.data.stats import count_chunk, count_pixels, split_stats
from rspnet.stages.data_stats import run as run_data_stats

SMALL = ("stage=data_stats", "dataset.image_size=[24,40]", "dataset.num_train=20", "dataset.num_val=5")


def test_synthetic_stats_json(make_cfg) -> None:
    cfg = make_cfg(*SMALL, "stage.workers=1")
    result = run_data_stats(cfg)
    on_disk = json.loads((Path(cfg.paths.output_dir) / "data_stats.json").read_text())
    assert on_disk == result
    assert result["dataset"] == "synthetic" and len(result["classes"]) == 19
    assert {k: v["num_images"] for k, v in result["splits"].items()} == {"train": 20, "val": 5}
    ds = build_dataset(cfg, "val", train=False)
    expected = np.zeros(256, dtype=np.int64)
    for i in range(len(ds)):
        expected += np.bincount(ds.load_label(i).ravel(), minlength=256)
    assert result["splits"]["val"]["pixels_per_class"] == expected[:19].tolist()
    assert result["splits"]["val"]["ignored_pixels"] == int(expected[255])
    train = result["splits"]["train"]
    assert sum(train["pixels_per_class"]) + train["ignored_pixels"] == 20 * 24 * 40
    # presence counts for median-frequency balancing, and both weight vectors
    present, image_pixels = np.zeros(19, dtype=np.int64), np.zeros(19, dtype=np.int64)
    ds = build_dataset(cfg, "train", train=False)
    for i in range(len(ds)):
        mask = ds.load_label(i)
        ids = np.unique(mask[mask != 255])
        present[ids] += 1
        image_pixels[ids] += int((mask != 255).sum())
    assert (
        train["images_with_class"] == present.tolist() and train["pixels_of_images_with_class"] == image_pixels.tolist()
    )
    freq = np.array(train["pixels_per_class"]) / np.maximum(image_pixels, 1)
    median_freq = np.median(freq[present > 0]) / np.where(present > 0, freq, np.inf)
    assert train["class_weights"]["median_freq"] == pytest.approx(median_freq.tolist(), rel=1e-5)
    p = np.array(train["pixels_per_class"]) / sum(train["pixels_per_class"])
    assert train["class_weights"]["enet"] == pytest.approx((1 / np.log(1.02 + p)).tolist(), rel=1e-5)


class _Labels:
    """The part of a SegDataset the counters use: two classes, hand-made label maps."""

    num_classes = 2
    name = "hand"

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks, self.items = masks, [(None, "label")] * len(masks)

    def __len__(self) -> int:
        return len(self.masks)

    def load_label(self, i: int) -> np.ndarray:
        return self.masks[i]


def test_horizontal_runs_give_the_class_width_by_hand() -> None:
    # row 0: 0 0 1 1 | row 1: 1 255 1 0 -> class 0 runs: [0 0], [0]; class 1: [1 1], [1], [1]; ignored: 1 run
    mask = np.array([[0, 0, 1, 1], [1, 255, 1, 0]], dtype=np.int64)
    counts = count_chunk(_Labels([mask]), [0])
    assert counts[3].tolist() == [2, 3, 1] and counts[0].tolist() == [3, 4, 1]
    stats = split_stats(_Labels([mask, mask]), workers=1, split="train")
    assert stats["horizontal_runs_per_class"] == [4, 6]
    assert stats["mean_run_width_px"] == [1.5, 1.33]  # pixels / runs: 6 / 4, 8 / 6


def test_process_pool_gives_the_same_counts(make_cfg) -> None:
    ds = build_dataset(make_cfg(*SMALL), "train", train=False)
    pooled = count_pixels(ds, workers=2, chunk=3)
    assert np.array_equal(pooled, count_pixels(ds, workers=1))


@pytest.mark.slow  # a fresh interpreter importing torch + Lightning: ~10-30 s on a busy 2-core box
def test_cli_reports_missing_root_in_one_line(tmp_path: Path) -> None:
    rspnet = Path(sys.executable).with_name("rspnet")
    proc = subprocess.run(
        [
            str(rspnet),
            "stage=data_stats",
            "dataset=camvid",
            f"dataset.root={tmp_path / 'missing'}",
            f"paths.output_dir={tmp_path / 'out'}",
            "logger=none",
            "print_config=false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert errors == [
        f"rspnet: error: dataset.root={tmp_path / 'missing'}: folder not found; "
        "download camvid there or fix dataset.root"
    ]
    assert "Traceback" not in proc.stderr
