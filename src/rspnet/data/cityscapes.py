"""Cityscapes (gtFine): labelIds -> 19 train ids through the official cityscapesscripts table.

Layout: `root/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png` and
`root/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`; a `*_gtFine_labelTrainIds.png`
(made by cityscapesscripts' createTrainIdLabelImgs) is used when labelIds is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

from rspnet.data.base import IGNORE, SegDataset, check_root, make_lut, pair_files

_TRAIN = sorted((lb for lb in _CS_LABELS if 0 <= lb.trainId < IGNORE), key=lambda lb: lb.trainId)
CLASSES = [lb.name for lb in _TRAIN]
PALETTE = [tuple(lb.color) for lb in _TRAIN]
SPLITS = ("train", "val", "test")
# labelId -> trainId for every id the label files can hold (0..33); the rest are unknown
LABELID_LUT = make_lut({lb.id: (lb.trainId if 0 <= lb.trainId < IGNORE else IGNORE) for lb in _CS_LABELS if lb.id >= 0})
TRAINID_LUT = make_lut({**{i: i for i in range(len(CLASSES))}, IGNORE: IGNORE})
_TO_LABELID = np.zeros(256, dtype=np.uint8)  # trainId -> labelId; 255 -> 0 (unlabeled)
for _lb in _TRAIN:
    _TO_LABELID[_lb.trainId] = _lb.id


def trainid_to_labelid(array: np.ndarray) -> np.ndarray:
    """Map train ids (0..18, 255) to Cityscapes labelIds (uint8) for the official benchmark."""
    return _TO_LABELID[np.asarray(array).astype(np.int64)]


def _label_for(gt_dir: Path):
    """Label lookup: `<stem>_gtFine_labelIds.png`, else `<stem>_gtFine_labelTrainIds.png`."""

    def find(img: Path) -> Path | None:
        stem = img.name[: -len("_leftImg8bit.png")]
        for suffix in ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"):
            path = gt_dir / img.parent.name / f"{stem}{suffix}"
            if path.is_file():
                return path
        return None

    return find


class CityscapesDataset(SegDataset):
    """Cityscapes split; the LUT follows the label file's kind (labelIds or labelTrainIds)."""

    def lut_for(self, label_path: Path) -> np.ndarray:
        """labelIds LUT, or the identity LUT for `*_labelTrainIds.png`."""
        return TRAINID_LUT if label_path.name.endswith("_labelTrainIds.png") else LABELID_LUT


def available_splits(dcfg: Any) -> list[str]:
    """Splits whose image folder exists under the root."""
    root = check_root(dcfg.get("root"), "cityscapes")
    return [s for s in SPLITS if (root / "leftImg8bit" / s).is_dir()]


def build(dcfg: Any, split: str, transform: Any, seed: int) -> CityscapesDataset:
    """Cityscapes `split` (train | val | test)."""
    root = check_root(dcfg.get("root"), "cityscapes")
    gt_dir = root / "gtFine" / split
    # the public test split ships dummy labels; tolerate their absence there only
    items = pair_files(
        root / "leftImg8bit" / split,
        "*/*_leftImg8bit.png",
        _label_for(gt_dir),
        split,
        required=split != "test" or gt_dir.is_dir(),
    )
    return CityscapesDataset(
        "cityscapes", items, CLASSES, PALETTE, transform=transform, unknown_ids=dcfg.get("unknown_ids", "error")
    )
