"""A video as one more source of frames (OpenCV): open it, read RGB frames, write an mp4v video.

OpenCV is imported inside the functions: image-only runs never pay for loading it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rspnet.errors import ArtifactError, DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: str | Path) -> bool:
    """A file name with one of `VIDEO_EXTENSIONS`."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def open_video(path: Path) -> tuple[Any, float, int | None]:
    """(opened cv2.VideoCapture, fps, frame count the container announces or None)."""
    import cv2

    if not path.is_file():
        raise DataError(f"predict.input={path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"predict.input={path}: OpenCV cannot open this video (unsupported codec or corrupt file)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, cap.get(cv2.CAP_PROP_FPS) or 25.0, count if count > 0 else None


def frames(cap: Any, limit: int | None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an opened cv2.VideoCapture (at most `limit`)."""
    import cv2

    n = 0
    while limit is None or n < limit:
        ok, bgr = cap.read()
        if not ok:
            return
        n += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_writer(path: Path, fps: float, frame: np.ndarray) -> Any:
    """An opened mp4v cv2.VideoWriter for frames like `frame`; ArtifactError if OpenCV cannot open it."""
    import cv2

    h, w = frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise ArtifactError(
            f"cannot write {path}: OpenCV's video writer (mp4v, {w}x{h}) did not open; "
            "check the output dir is writable and OpenCV has an mp4v encoder"
        )
    return writer


def write_frame(writer: Any, rgb: np.ndarray) -> None:
    """Append a uint8 RGB frame to an opened cv2.VideoWriter."""
    import cv2

    writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
