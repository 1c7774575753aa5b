"""Shared dataset machinery: file pairing, label look-up tables, checks with one-line errors.

Every dataset maps its raw label ids to train ids through a look-up table (LUT) of
int16 values: a train id, 255 (ignore) or UNKNOWN (an id outside the mapping, which
raises a DataError or, with `dataset.unknown_ids=ignore`, becomes 255 with one warning).
Negative ids (possible in 32-bit label files) are outside every mapping: they never index
the LUT from its end.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from rspnet.data.transforms import eval_transform
from rspnet.errors import ConfigError, DataError

IGNORE = 255
UNKNOWN = -1
Item = tuple[Path | None, Path | None]


def check_root(root: Any, name: str) -> Path:
    """Return `dataset.root` as an existing folder, or raise a one-line DataError."""
    if root in (None, "", "None", "null"):
        raise DataError(f"dataset.root is not set for dataset={name}; pass dataset.root=PATH")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DataError(f"dataset.root={path}: folder not found; download {name} there or fix dataset.root")
    return path


def check_unknown_ids(value: Any) -> str:
    """Validate `dataset.unknown_ids` (error | ignore)."""
    if value not in ("error", "ignore"):
        raise ConfigError(f"dataset.unknown_ids={value} is invalid; use dataset.unknown_ids=error or =ignore")
    return str(value)


def pair_files(
    image_dir: Path, pattern: str, label_for: Callable[[Path], Path | None], split: str, required: bool = True
) -> list[Item]:
    """List `image_dir/pattern` (sorted) paired with their label files.

    `label_for(image)` returns the label path or None; a missing label is an error when
    `required`, otherwise (a label-free test split) every label is None.
    """
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: folder not found for split '{split}'; check dataset.root and the layout")
    images = sorted(image_dir.glob(pattern))
    if not images:
        raise DataError(f"{image_dir}: no images ({pattern}) for split '{split}'; the split is empty")
    items: list[Item] = []
    for img in images:
        label = label_for(img)
        if label is None and required:
            raise DataError(f"{img}: image has no label file; add it or remove the image")
        items.append((img, label))
    return items


def decode_file(path: Path, what: str, decode: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """`decode` of the opened image file; one DataError naming it if unreadable, empty or bomb-sized.

    Images above PIL's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, about 89M pixels)
    are refused before their pixels are decoded: PIL only warns below twice that limit.
    """
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: cannot read {what}: empty file (0 bytes); re-download or remove the file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # PIL itself refuses headers of 0 x N pixels
                return decode(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: {what} too large to read safely ({e}); downscale or remove the file") from e
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read {what} ({e}); re-download or remove the file") from e


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as uint8 [H, W, 3]; a corrupt/unreadable file gives a DataError."""
    return decode_file(path, "image", lambda im: np.asarray(im.convert("RGB"), dtype=np.uint8))


def read_label(path: Path) -> np.ndarray:
    """Read a label PNG as stored (index/palette values, [H, W] or [H, W, 3] for colour labels)."""
    # palette ("P") PNGs give their stored indices, which are the class ids
    return decode_file(path, "label", np.asarray)


def make_lut(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """LUT raw id -> train id (255 = ignore); ids not in `mapping` are UNKNOWN."""
    lut = np.full(size, UNKNOWN, dtype=np.int16)
    for raw, train in mapping.items():
        if not 0 <= raw < size:  # a negative key would silently set an entry counted from the end
            raise ValueError(f"LUT key {raw} is outside 0..{size - 1}")
        lut[raw] = train
    return lut


class SegDataset(Dataset):
    """Items of (image, label) files -> (image float32 [3,h,w] normalised, mask int64 [H,W]).

    Training (`augment`): image and mask go through the random pipeline together. Evaluation: only the
    image is transformed; the mask keeps the label file's resolution H x W, which scoring uses.
    """

    def __init__(
        self,
        name: str,
        items: Sequence[Item],
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]],
        transform: Any = None,
        unknown_ids: str = "error",
    ) -> None:
        self.name = name
        self.items: list[Item] = list(items)
        self.classes = list(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.num_classes = len(self.classes)
        self.ignore_index = IGNORE
        self.transform = transform if transform is not None else eval_transform()
        # a random (training) pipeline draws its seed from torch's RNG per sample; the eval pipeline is
        # deterministic and draws nothing, so evaluating never moves the RNG training draws from
        self.augment = transform is not None
        self.unknown_ids = check_unknown_ids(unknown_ids)
        self._warned = False

    def __len__(self) -> int:
        return len(self.items)

    # --- hooks a dataset overrides -------------------------------------------------
    def sequences(self) -> list[str] | None:
        """Per item, the video sequence its frame comes from (`train.holdout_sequences`); None: not known."""
        return None

    def lut_for(self, label_path: Path) -> np.ndarray:
        """The raw-id -> train-id LUT for one label file."""
        raise NotImplementedError

    def decode_label(self, raw: np.ndarray, label_path: Path) -> np.ndarray:
        """Turn a stored label array into raw ids [H, W] (colour labels override this)."""
        if raw.ndim != 2:
            raise DataError(f"{label_path}: label must be a single-channel id image, got shape {raw.shape}")
        return raw

    # --- loading --------------------------------------------------------------------
    def load_image(self, index: int) -> np.ndarray:
        """Image `index` as uint8 [H, W, 3], no transforms."""
        path = self.items[index][0]
        assert path is not None
        return read_image(path)

    def load_label(self, index: int) -> np.ndarray | None:
        """Mask `index` as train ids uint8 [H, W] (255 = ignore), no transforms; None if unlabelled."""
        path = self.items[index][1]
        if path is None:
            return None
        raw = self.decode_label(read_label(path), path)
        return self.map_ids(raw, self.lut_for(path), path)

    def map_ids(self, raw: np.ndarray, lut: np.ndarray, path: Path) -> np.ndarray:
        """Apply `lut`; ids outside it raise (or become 255 with one warning)."""
        raw = raw.astype(np.int64, copy=False)
        outside = (raw < 0) | (raw >= len(lut))  # a negative id would index the LUT from its end
        mapped = lut[np.where(outside, 0, raw)]
        unknown = outside | (mapped == UNKNOWN)
        if unknown.any():
            ids = np.unique(raw[unknown])
            shown = ", ".join(str(i) for i in ids[:8]) + (" ..." if len(ids) > 8 else "")
            msg = f"{path}: label ids [{shown}] are outside the {self.name} mapping"
            if self.unknown_ids == "error":
                raise DataError(f"{msg}; fix the file or set dataset.unknown_ids=ignore to map them to 255")
            if not self._warned:
                self._warned = True
                warnings.warn(f"{msg}; mapping them to 255 (dataset.unknown_ids=ignore)", stacklevel=2)
            mapped = np.where(unknown, IGNORE, mapped)
        return mapped.astype(np.uint8)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.load_image(index)
        mask = self.load_label(index)
        if mask is None:
            mask = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
        elif mask.shape != image.shape[:2]:
            img_path, label_path = self.items[index]
            raise DataError(
                f"{label_path}: label size {mask.shape[1]}x{mask.shape[0]} != image size "
                f"{image.shape[1]}x{image.shape[0]} ({img_path}); fix or remove the pair"
            )
        if self.augment:  # augmentation randomness follows torch's RNG (seeded, checkpointed, per worker)
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
            res = self.transform(image=image, mask=mask)
            image, mask = res["image"], res["mask"]
        else:  # evaluation: the image may be resized, the label never is (scores are upsampled to it)
            image = self.transform(image=image)["image"]
        return (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
        )
