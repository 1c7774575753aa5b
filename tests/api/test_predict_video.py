"""stage=predict on a video: overlay.mp4 with every frame, per-frame labelIds if asked, predict.json with frames/s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rspnet.errors import DataError
from rspnet.stages.predict import run as run_predict
from tests.train.conftest import compose_cfg

FRAMES, H, W = 7, 48, 64


def _clip(path: Path) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        writer.write(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    writer.release()
    return path


def test_video_gives_an_overlay_video_and_labelids(tiny_ckpt: Path, tmp_path: Path) -> None:
    import cv2

    clip = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "pred"
    result = run_predict(
        compose_cfg(
            out,
            "stage=predict",
            f"ckpt={tiny_ckpt}",
            f"predict.input={clip}",
            "predict.label_ids=true",
            "predict.batch_size=3",
        )
    )
    cap = cv2.VideoCapture(str(out / "predictions" / "overlay.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)
    ids = sorted((out / "predictions" / "labelIds" / "clip").glob("clip_*_labelIds.png"))
    assert len(ids) == FRAMES and ids[0].name == "clip_000000_labelIds.png"
    report = json.loads((out / "predict.json").read_text())
    assert report["num_images"] == result["num_images"] == FRAMES and report["fps"] == pytest.approx(10.0)
    assert report["images_per_s"] > 0 and report["batch_size"] == 3


def test_video_limit_default_labelids_and_bad_file(tiny_ckpt: Path, tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "pred"
    assert (
        run_predict(compose_cfg(out, "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={clip}", "predict.limit=2"))[
            "num_images"
        ]
        == 2
    )
    assert not (out / "predictions" / "labelIds").exists()  # frames get no labelIds unless asked
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="bad.mp4"):
        run_predict(
            compose_cfg(tmp_path / "p2", "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={tmp_path / 'bad.mp4'}")
        )
