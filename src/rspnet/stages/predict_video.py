"""stage=predict on a video: DIR/predictions/overlay.mp4 (mp4v, the source's fps) and, if asked, per-frame labelIds.

Frames are read with OpenCV, predicted `predict.batch_size` at a time through the same
`Segmenter` as images, and written in order; labelIds go to
`labelIds/<video stem>/<video stem>_<frame:06d>_labelIds.png` (`predict.label_ids=true`).
A video that ends before the frame count its container announces (truncated or corrupt) is a
DataError, not a shorter result (containers that announce no count, 0, are read to their end);
the video is written under a temporary name and renamed to overlay.mp4 only when complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm  # a text bar everywhere: tqdm.auto warns in Jupyter without ipywidgets

from rspnet.errors import ArtifactError, DataError
from rspnet.segmenter import Segmenter
from rspnet.stages.predict import Names, predict_batch, prepare, write_prediction
from rspnet.viz.masks import overlay

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _frames(cap: Any, limit: int | None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an opened cv2.VideoCapture (at most `limit`)."""
    import cv2  # OpenCV loads only for video input (image-only predict runs never pay for it)

    n = 0
    while limit is None or n < limit:
        ok, bgr = cap.read()
        if not ok:
            return
        n += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _writer(path: Path, fps: float, frame: np.ndarray) -> Any:
    """An opened mp4v cv2.VideoWriter for frames like `frame`; ArtifactError if OpenCV cannot open it."""
    import cv2  # see _frames

    h, w = frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise ArtifactError(
            f"cannot write {path}: OpenCV's video writer (mp4v, {w}x{h}) did not open; "
            "check the output dir is writable and OpenCV has an mp4v encoder"
        )
    return writer


def _open(path: Path) -> tuple[Any, float, int | None]:
    """(opened cv2.VideoCapture, fps, frame count the container announces or None)."""
    import cv2  # see _frames

    if not path.is_file():
        raise DataError(f"predict.input={path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"predict.input={path}: OpenCV cannot open this video (unsupported codec or corrupt file)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, cap.get(cv2.CAP_PROP_FPS) or 25.0, count if count > 0 else None


def predict_video(
    cfg: DictConfig, seg: Segmenter, path: Path, out: Path, save: bool, label_ids: bool, limit: int | None
) -> dict:
    """Overlay video + optional per-frame class maps of `path`; returns {"num_images", "video", "fps"}."""
    import cv2  # see _frames

    cap, fps, announced = _open(path)
    expected = min(announced, limit) if announced and limit is not None else announced
    p = cfg.predict
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "overlay.mp4"
    tmp = out / ".overlay.mp4.part.mp4"  # renamed when complete: a killed run leaves no half video under the final name
    writer = None
    n = 0
    try:
        with tqdm(total=expected, unit="frame", desc="predict", disable=not p.get("progress", True)) as bar:
            for batch in _batches(_frames(cap, limit), seg.batch_size):
                preds = predict_batch(seg, [prepare(f, cfg) for f in batch], [f.shape[:2] for f in batch])
                for frame, pred in zip(batch, preds):
                    writer = writer or _writer(tmp, fps, frame)
                    blended = overlay(frame, pred, seg.palette, float(p.alpha))
                    writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
                    if save:
                        names = Names("", path.stem, f"{path.stem}_{n:06d}")
                        write_prediction(out, names, pred, None, seg.palette, 0.0, save, label_ids)
                    n += 1
                bar.update(len(batch))
        if n == 0:
            raise DataError(f"predict.input={path}: no frame could be read from this video")
        if expected is not None and n < expected:
            raise DataError(
                f"predict.input={path}: only {n} of the {expected} frames its container announces could be read "
                "(truncated or corrupt video); no result was written"
            )
    except BaseException:
        if writer is not None:
            writer.release()
            writer = None
        tmp.unlink(missing_ok=True)
        raise
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    tmp.replace(video_path)
    return {"num_images": n, "video": str(video_path), "fps": fps}
