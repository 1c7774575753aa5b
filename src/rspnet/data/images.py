"""Image files in, network input out: read any image as uint8 RGB, list a folder's images, normalise.

The one reader of `Segmenter` (the Python API) and `stage=predict`: `read_rgb` (a file), `as_rgb`
(a file or an array), `list_images` (a folder, recursive and sorted), `to_tensor` (the datasets'
MEAN/STD at the image's own size) and `prepare` (the datasets' eval pipeline: normalise after the
optional `resize_long` / `eval_scale`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rspnet.data.base import decode_file
from rspnet.data.transforms import MEAN, STD, eval_transform
from rspnet.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ImageLike = np.ndarray | str | Path


def list_images(
    folder: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, name: str | None = None
) -> list[Path]:
    """Image files under `folder` (recursive, sorted): the order of `Segmenter.predict(folder)`.

    None found is a DataError naming the folder as `name` (default: the folder's path).
    """
    root = Path(folder)
    exts = {e.lower() for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataError(f"{name or root}: no images ({', '.join(sorted(exts))}) in it")
    return files


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I"):  # 16/32-bit greyscale: rescale to 8 bit before RGB conversion
        a = np.asarray(im, dtype=np.float64)
        a = (255.0 * (a - a.min()) / max(float(a.max() - a.min()), 1.0)).astype(np.uint8)
        return np.stack([a] * 3, axis=-1)
    return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def read_rgb(path: Path) -> np.ndarray:
    """Any PIL-readable image (grey, palette, RGBA, 16-bit) as uint8 RGB [H, W, 3]; clear error if unreadable.

    Empty (0 bytes, 0 pixels) and decompression-bomb-sized files are one DataError too (`decode_file`).
    """
    return decode_file(path, "image", _to_rgb)


def as_rgb(image: ImageLike) -> np.ndarray:
    """A path (any PIL-readable image) or an array ([H, W] grey, [H, W, 3] RGB, [H, W, 4] RGBA) -> uint8 RGB."""
    if isinstance(image, (str, Path)):
        return read_rgb(Path(image))
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DataError(f"image array must be [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    if a.dtype != np.uint8:
        raise DataError(f"image array must be uint8 (0-255), got {a.dtype}")
    return a[..., :3]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> the network's normalised float input [3, H, W] (datasets' MEAN/STD)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def prepare(rgb: np.ndarray, resize_long: int | None = None, eval_scale: float | None = None) -> torch.Tensor:
    """uint8 [H, W, 3] -> the network input [3, h, w]: the datasets' eval pipeline (normalise, optional
    `resize_long` and `eval_scale`)."""
    x = eval_transform(resize_long, eval_scale)(image=rgb)["image"]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float()
