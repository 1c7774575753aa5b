"""A task whose right cell op is known by construction (`dataset=known_op`): the knight's-move dots.

The image is grey with one dot per 4x4 pixel block, at the block's first pixel (4i, 4j): white
(bit 1) or black (bit 0), bits i.i.d. The label of block (i, j) is the bit of block
(i + dy, j + dx), `dataset.offset` = [dy, dx] = [1, 2] by default, on the block's centre 2x2
pixels (255 elsewhere and where that block is outside the image). Two classes.

Why that makes conv_5x5 the right op (docs/design.md "Search evidence"): the stem (two
stride-2 3x3 convs) sees pixels 4p-3..4p+3 around block p, so its output at p holds block p's
dot only; the head is 1x1. Every bit the label needs is therefore exactly offset (1, 2) away
on the cell's 1/4-resolution grid, and of the five ops only conv_5x5 (offsets -2..2) reaches
it in one edge: conv_3x3 / dw_conv_3x3 reach 1, dil_conv_3x3 only even offsets, skip 0. On edge
0->2 (x0 straight into n2) conv_5x5 is the one op that carries the signal; the other edges can
also pass it on through two-op compositions (e.g. conv_3x3 then dil_conv_3x3), so they are not
decisive. No augmentation (`conf/dataset/known_op.yaml`): a scale, crop offset or flip would
move the dots off their phase.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rspnet.data.base import IGNORE, SegDataset
from rspnet.errors import ConfigError

SPLITS = {"train": 0, "val": 1, "test": 2}
CLASSES = ["bit0", "bit1"]
PALETTE = [(0, 0, 0), (255, 255, 255)]
BLOCK = 4  # the stem's output stride: one block = one cell of the 1/4-resolution grid
RIGHT_OP = {"edge": "0->2", "op": "conv_5x5"}  # for the default offset [1, 2]


def render(
    seed: int, split: str, index: int, size: tuple[int, int], offset: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: (image uint8 [H, W, 3], mask uint8 [H, W] of bits / 255)."""
    h, w = size
    gh, gw = h // BLOCK, w // BLOCK
    bits = np.random.default_rng([int(seed), SPLITS[split], int(index)]).integers(0, 2, size=(gh, gw))
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    img[::BLOCK, ::BLOCK][:gh, :gw] = (bits * 255).astype(np.uint8)[..., None]
    dy, dx = offset
    target = np.full((gh, gw), IGNORE, dtype=np.uint8)
    ys, xs = slice(max(-dy, 0), gh - max(dy, 0)), slice(max(-dx, 0), gw - max(dx, 0))
    target[ys, xs] = bits[max(dy, 0) : gh + min(dy, 0), max(dx, 0) : gw + min(dx, 0)]
    lab = np.full((h, w), IGNORE, dtype=np.uint8)
    for a in (1, 2):  # the block's centre 2x2 pixels: the bilinear upsampling of the logits is ~7/8 this block there
        for b in (1, 2):
            lab[a::BLOCK, b::BLOCK][:gh, :gw] = target
    return img, lab


class KnownOpDataset(SegDataset):
    """`num` knight's-move samples of `size` for one split."""

    def __init__(
        self, seed: int, split: str, num: int, size: tuple[int, int], offset: tuple[int, int], **kwargs: Any
    ) -> None:
        super().__init__("known_op", [(None, None)] * num, CLASSES, PALETTE, **kwargs)
        self.seed, self.split, self.size, self.offset = int(seed), split, size, offset

    def load_image(self, index: int) -> np.ndarray:
        """Generated image `index` (uint8 [H, W, 3])."""
        return render(self.seed, self.split, index, self.size, self.offset)[0]

    def load_label(self, index: int) -> np.ndarray:
        """Generated mask `index` (uint8 [H, W])."""
        return render(self.seed, self.split, index, self.size, self.offset)[1]


def build(dcfg: Any, split: str, transform: Any, seed: int) -> KnownOpDataset:
    """known_op dataset for `split` (train: num_train samples, val/test: num_val)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split} is unknown for dataset=known_op; use train, val or test")
    size = tuple(int(v) for v in dcfg.image_size)
    if len(size) != 2 or min(size) < 4 * BLOCK or any(v % BLOCK for v in size):
        raise ConfigError(f"dataset.image_size={list(size)} must be [H, W], multiples of {BLOCK}, both >= {4 * BLOCK}")
    offset = tuple(int(v) for v in dcfg.get("offset", (1, 2)))
    if len(offset) != 2 or any(abs(v) >= min(size) // BLOCK for v in offset):
        raise ConfigError(f"dataset.offset={list(offset)} must be [dy, dx] in blocks, inside the {list(size)} image")
    num = int(dcfg.num_train if split == "train" else dcfg.num_val)
    if num < 1:
        raise ConfigError(f"dataset.num_{'train' if split == 'train' else 'val'}={num}: the split is empty; use >= 1")
    return KnownOpDataset(seed, split, num, size, offset, transform=transform)  # type: ignore[arg-type]


def available_splits(dcfg: Any) -> list[str]:
    """Generated: a train and a val split (test = another val-sized draw)."""
    return ["train", "val"]
