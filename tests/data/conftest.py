"""Tiny on-disk dataset trees (16x32 PNGs) in Cityscapes, Mapillary and CamVid layouts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

H, W = 16, 32


def write_label(path: Path, rows: list[tuple[int, int]], palette: list[tuple[int, int, int]] | None = None) -> Path:
    """Label PNG of H x W whose row bands are given as (number of rows, id); P-mode if `palette`."""
    arr = np.concatenate([np.full((n, W), v, dtype=np.uint8) for n, v in rows])
    assert arr.shape == (H, W)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("P" if palette is not None else "L", (W, H))
    im.putdata(arr.ravel().tolist())
    if palette is not None:
        im.putpalette([c for rgb in palette for c in rgb])
    im.save(path)
    return path


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> Path:
    """Random RGB image (PNG or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    """train: one labelIds file + one labelTrainIds-only file; val: one labelIds file."""
    root = tmp_path / "cityscapes"
    write_image(root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", 1)
    # sky 23, building 11, road 7, car 26, unlabeled 0 (void), caravan 29 (void in Cityscapes)
    write_label(
        root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png",
        [(4, 23), (4, 11), (4, 7), (2, 26), (1, 0), (1, 29)],
    )
    write_image(root / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png", 2)
    # train ids: vegetation 8, ignore 255
    write_label(root / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png", [(8, 8), (8, 255)])
    write_image(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png", 3)
    write_label(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png", [(16, 24)])  # person
    return root


MAPILLARY_LABELS = {
    "v1.2": [
        "construction--barrier--curb",
        "construction--flat--road",
        "marking--general",
        "object--vehicle--car",
        "object--vehicle--caravan",
        "void--ego-vehicle",
        "object--support--utility-pole",
        "nature--sky",
    ],
    "v2.0": [
        "marking--discrete--arrow--left",
        "object--traffic-sign--direction-front",
        "human--person--individual",
        "human--rider--motorcyclist",
        "object--sign--advertisement",
        "construction--flat--parking",
        "nature--sand",
        "construction--flat--road",
    ],
}


def _colour(i: int) -> tuple[int, int, int]:
    return (10 * i + 5, 200 - 10 * i, (37 * i) % 256)


@pytest.fixture
def make_mapillary(tmp_path: Path) -> Callable[[str], Path]:
    """`make_mapillary(version)` -> root with one training and one validation image (P-mode labels)."""

    def make(version: str) -> Path:
        root = tmp_path / f"mapillary_{version}"
        names = MAPILLARY_LABELS[version]
        labels = [
            {"name": n, "readable": n, "color": list(_colour(i)), "instances": False} for i, n in enumerate(names)
        ]
        root.mkdir(parents=True)
        (root / f"config_{version}.json").write_text(json.dumps({"labels": labels, "version": version}))
        palette = [_colour(i) for i in range(len(names))]
        rows = [(4, 7), (2, 6), (2, 0), (4, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
        for folder, seed in (("training", 1), ("validation", 2)):
            write_image(root / folder / "images" / f"img{seed}.jpg", seed)
            write_label(root / folder / version / "labels" / f"img{seed}.png", rows, palette)
        return root

    return make


def write_camvid(root: Path) -> Path:
    """SegNet layout under `root`: two train pairs, one val pair (pixel 11 = void), no test split."""
    for split, name, rows in (
        ("train", "a.png", [(8, 0), (4, 3), (4, 11)]),
        ("train", "b.png", [(16, 10)]),
        ("val", "c.png", [(10, 8), (6, 9)]),
    ):
        write_image(root / split / name)
        write_label(root / f"{split}annot" / name, rows)
    return root


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    """`write_camvid` in the test's tmp_path."""
    return write_camvid(tmp_path / "camvid")
