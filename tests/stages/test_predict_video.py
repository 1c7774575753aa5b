"""stage=predict on a video: overlay.mp4 with every frame, per-frame labelIds if asked, predict.json with frames/s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rspnet.errors import DataError
from rspnet.stages.predict import run as run_predict
from tests.conftest import compose_cfg

FRAMES, H, W = 7, 48, 64


def _clip(path: Path, codec: str = "mp4v") -> Path:
    """FRAMES random frames; `codec="MJPG"` into an .avi (its header announces the frame count, the index is at the end)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10.0, (W, H))
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


def _damaged(path: Path, how: str) -> Path:
    data = path.read_bytes()
    if how == "truncated":  # cut half-way: the header still announces every frame
        path.write_bytes(data[: len(data) // 2])
    else:  # a quarter of the frame data zeroed: decoding stops at the first bad frame
        mid, quarter = len(data) // 2, len(data) // 4
        path.write_bytes(data[:mid] + bytes(quarter) + data[mid + quarter :])
    return path


@pytest.mark.parametrize("how", ["truncated avi", "corrupt mp4"])
def test_a_truncated_or_corrupt_video_is_an_error_not_a_shorter_result(tiny_ckpt: Path, tmp_path: Path, how: str):
    clip = _clip(tmp_path / "clip.avi", "MJPG") if how.endswith("avi") else _clip(tmp_path / "clip.mp4")
    _damaged(clip, how.split()[0])
    out = tmp_path / "pred"
    cfg = compose_cfg(out, "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={clip}", "predict.label_ids=true")
    with pytest.raises(
        DataError, match=rf"clip\.{clip.suffix[1:]}: only \d of the {FRAMES} frames .*\(truncated or corrupt video\)"
    ):
        run_predict(cfg)
    assert not (out / "predict.json").exists() and not (out / "predictions").exists()
    assert not list(out.rglob("*.mp4")) and not list(out.rglob("*.png"))  # no partial output anywhere


def test_an_intact_avi_and_a_limit_pass_the_frame_count_check(tiny_ckpt: Path, tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.avi", "MJPG")
    for limit, expected in (("null", FRAMES), (3, 3)):
        out = tmp_path / f"pred{limit}"
        cfg = compose_cfg(out, "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={clip}", f"predict.limit={limit}")
        assert run_predict(cfg)["num_images"] == expected and (out / "predictions" / "overlay.mp4").is_file()


def test_a_container_without_a_frame_count_is_read_to_its_end(tiny_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    import cv2

    real = cv2.VideoCapture

    class NoCount:  # a stream that announces 0 frames (unknown), as some containers do
        def __init__(self, path: str) -> None:
            self.cap = real(path)

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name: str):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoCount)
    clip = _clip(tmp_path / "clip.mp4")
    cfg = compose_cfg(tmp_path / "pred", "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={clip}")
    assert run_predict(cfg)["num_images"] == FRAMES


def test_a_video_writer_that_does_not_open_is_one_clear_error(tiny_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    import cv2

    from rspnet.errors import ArtifactError

    class Closed:  # what OpenCV returns without an mp4v encoder: no exception, a writer that drops every frame
        def __init__(self, *args) -> None:
            pass

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

        def write(self, frame) -> None:
            pass

        def release(self) -> None:
            pass

    clip = _clip(tmp_path / "clip.mp4")
    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    out = tmp_path / "pred"
    with pytest.raises(ArtifactError, match=r"cannot write .*overlay\.mp4\.part\.mp4: OpenCV's video writer"):
        run_predict(compose_cfg(out, "stage=predict", f"ckpt={tiny_ckpt}", f"predict.input={clip}"))
    assert not (out / "predict.json").exists() and not (out / "predictions").exists()
