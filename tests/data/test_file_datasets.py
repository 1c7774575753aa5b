"""Cityscapes / Mapillary / CamVid trees: layouts, label mappings (checked via data_stats), loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet.data import build_dataset
from rspnet.data.cityscapes import CLASSES as CS
from rspnet.data.cityscapes import trainid_to_labelid
from rspnet.data.mapillary import cityscapes_class
from rspnet.stages.data_stats import run as run_data_stats

from .conftest import H, W


def counts(**per_class: int) -> list[int]:
    """A 19-entry pixel-count list from Cityscapes class names."""
    out = [0] * len(CS)
    for name, n in per_class.items():
        out[CS.index(name.replace("_", " "))] = n
    return out


def test_cityscapes_stats_map_labelids_and_trainids(make_cfg, cityscapes_root: Path) -> None:
    cfg = make_cfg("stage=data_stats", "dataset=cityscapes", f"dataset.root={cityscapes_root}")
    stats = run_data_stats(cfg)
    assert stats["classes"] == CS and len(CS) == 19
    assert list(stats["splits"]) == ["train", "val"]  # no test folder -> not reported
    train = stats["splits"]["train"]
    assert train["num_images"] == 2
    assert train["pixels_per_class"] == counts(sky=128, building=128, road=128, car=64, vegetation=256)
    assert train["ignored_pixels"] == 32 + 32 + 256  # unlabeled + caravan (void) + 255 train ids
    val = {
        k: stats["splits"]["val"][k] for k in ("num_images", "pixels_per_class", "ignored_pixels", "images_with_class")
    }
    assert val == {
        "num_images": 1,
        "pixels_per_class": counts(person=512),
        "ignored_pixels": 0,
        "images_with_class": [int(c == "person") for c in CS],
    }
    assert (Path(cfg.paths.output_dir) / "data_stats.json").is_file()


def test_cityscapes_sample_is_normalised_tensor_pair(make_cfg, cityscapes_root: Path) -> None:
    ds = build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "val", train=False)
    image, mask = ds[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32 and mask.dtype == torch.int64
    assert image.min() < 0 < image.max()  # mean/std normalised, not 0..1
    assert set(mask.unique().tolist()) == {CS.index("person")}
    assert ds.items[0][0].name.endswith("_leftImg8bit.png") and ds.name == "cityscapes"


def test_trainid_to_labelid_uses_official_ids() -> None:
    ids = trainid_to_labelid(np.array([[0, 1, 10, 18, 255]]))
    assert ids.tolist() == [[7, 8, 23, 33, 0]] and ids.dtype == np.uint8


@pytest.mark.parametrize(
    "version, expected, ignored",
    [
        # label rows (see conftest): sky 128 | utility pole 64 | curb 64 | road 128 | marking 32 | car 32 | caravan, ego 64
        ("v1.2", counts(sky=128, pole=64, sidewalk=64, road=160, car=32), 64),
        # label rows: road 128 | sand 64 | arrow marking 64 | direction sign 128 | person 32 | motorcyclist 32 | advert, parking 64
        ("v2.0", counts(road=128 + 64, terrain=64, traffic_sign=128, person=32, rider=32), 64),
    ],
)
def test_mapillary_stats_map_by_name(make_cfg, make_mapillary, version: str, expected: list[int], ignored: int) -> None:
    root = make_mapillary(version)
    cfg = make_cfg("stage=data_stats", "dataset=mapillary", f"dataset.root={root}", f"dataset.version={version}")
    stats = run_data_stats(cfg)
    assert list(stats["splits"]) == ["train", "val"]
    for split in ("train", "val"):
        assert stats["splits"][split]["pixels_per_class"] == expected
        assert stats["splits"][split]["ignored_pixels"] == ignored


def test_mapillary_rgb_colour_labels_decode_like_index_labels(make_cfg, make_mapillary) -> None:
    root = make_mapillary("v1.2")
    label = root / "training/v1.2/labels/img1.png"
    index_mask = build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}"), "train", False).load_label(0)
    with Image.open(label) as im:
        im.convert("RGB").save(label)
    ds = build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}"), "train", False)
    np.testing.assert_array_equal(ds.load_label(0), index_mask)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("construction--barrier--curb", "sidewalk"),
        ("marking--discrete--crosswalk-zebra", "road"),
        ("marking--crosswalk-zebra", "road"),
        ("object--support--utility-pole", "pole"),
        ("object--traffic-sign--back", "traffic sign"),
        ("object--traffic-light--pedestrians", "traffic light"),
        ("human--rider--other-rider", "rider"),
        ("object--vehicle--on-rails", "train"),
        ("object--vehicle--caravan", None),
        ("object--vehicle--trailer", None),
        ("void--ego-vehicle", None),
        ("construction--flat--parking", None),
        ("construction--barrier--guard-rail", None),
        ("object--sign--store", None),
    ],
)
def test_mapillary_ambiguous_names(name: str, cls: str | None) -> None:
    assert cityscapes_class(name) == cls


def test_camvid_stats_void_is_ignored(make_cfg, camvid_root: Path) -> None:
    stats = run_data_stats(make_cfg("stage=data_stats", "dataset=camvid", f"dataset.root={camvid_root}"))
    assert len(stats["classes"]) == 11 and list(stats["splits"]) == ["train", "val"]
    train, val = stats["splits"]["train"], stats["splits"]["val"]
    assert train["num_images"] == 2 and val["num_images"] == 1
    assert train["pixels_per_class"] == [256, 0, 0, 128, 0, 0, 0, 0, 0, 0, 512]
    assert train["ignored_pixels"] == 128
    assert val["pixels_per_class"] == [0] * 8 + [320, 192, 0] and val["ignored_pixels"] == 0
