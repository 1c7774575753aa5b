"""Bad dataset input gives one-line DataError/ConfigError naming the path or option."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from rspnet.data import build_datamodule, build_dataset
from rspnet.errors import ConfigError, DataError

from .conftest import write_image, write_label

TRAIN_IMG = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
TRAIN_LABEL = "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_root(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={tmp_path / 'nope'}"), "train", True)
    assert f"dataset.root={tmp_path / 'nope'}: folder not found" in one_line(e)
    with pytest.raises(DataError, match="dataset.root is not set"):
        build_dataset(make_cfg("dataset=camvid", "dataset.root=null"), "train", True)


def test_empty_split(make_cfg, cityscapes_root: Path) -> None:
    (cityscapes_root / "leftImg8bit/test").mkdir()
    with pytest.raises(DataError) as e:
        build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "test", False)
    assert "leftImg8bit/test: no images" in one_line(e) and "empty" in one_line(e)


def test_missing_split_folder(make_cfg, camvid_root: Path) -> None:
    with pytest.raises(DataError, match=r"camvid/test: folder not found for split 'test'"):
        build_dataset(make_cfg("dataset=camvid", f"dataset.root={camvid_root}"), "test", False)


def test_corrupt_image_fails_at_getitem_naming_the_file(make_cfg, cityscapes_root: Path) -> None:
    (cityscapes_root / TRAIN_IMG).write_bytes(b"\x89PNG not really")
    ds = build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "train", True)
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(cityscapes_root / TRAIN_IMG) in one_line(e) and "cannot read image" in one_line(e)
    ds[1]  # other items still load


def test_image_without_label_fails_at_setup(make_cfg, cityscapes_root: Path) -> None:
    (cityscapes_root / TRAIN_LABEL).unlink()
    dm = build_datamodule(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"))
    with pytest.raises(DataError) as e:
        dm.setup("fit")
    assert str(cityscapes_root / TRAIN_IMG) in one_line(e) and "no label" in one_line(e)


def test_unknown_label_ids_error_by_default(make_cfg, cityscapes_root: Path) -> None:
    write_label(cityscapes_root / TRAIN_LABEL, [(8, 7), (8, 40)])  # 40 is no Cityscapes labelId
    ds = build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "train", False)
    with pytest.raises(DataError) as e:
        ds[0]
    msg = one_line(e)
    assert str(cityscapes_root / TRAIN_LABEL) in msg and "[40]" in msg and "dataset.unknown_ids=ignore" in msg


def test_unknown_label_ids_ignore_maps_to_255_with_one_warning(make_cfg, camvid_root: Path) -> None:
    write_label(camvid_root / "trainannot/a.png", [(8, 0), (8, 200)])
    write_label(camvid_root / "trainannot/b.png", [(16, 12)])
    cfg = make_cfg("dataset=camvid", f"dataset.root={camvid_root}", "dataset.unknown_ids=ignore")
    ds = build_dataset(cfg, "train", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, mask_a = ds[0]
        _, mask_b = ds[1]
    assert len([w for w in caught if "outside the camvid mapping" in str(w.message)]) == 1
    assert mask_a[:8].eq(0).all() and mask_a[8:].eq(255).all() and mask_b.eq(255).all()


def test_bad_unknown_ids_option(make_cfg, camvid_root: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.unknown_ids=maybe"):
        build_dataset(
            make_cfg("dataset=camvid", f"dataset.root={camvid_root}", "dataset.unknown_ids=maybe"), "val", False
        )


def test_label_size_mismatch(make_cfg, camvid_root: Path) -> None:
    write_image(camvid_root / "val/c.png", size=(8, 8))
    ds = build_dataset(make_cfg("dataset=camvid", f"dataset.root={camvid_root}"), "val", False)
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(camvid_root / "valannot/c.png") in one_line(e) and "32x16 != image size 8x8" in one_line(e)


def test_multichannel_label_is_rejected(make_cfg, camvid_root: Path) -> None:
    write_image(camvid_root / "valannot/c.png")  # an RGB file where an index label belongs
    ds = build_dataset(make_cfg("dataset=camvid", f"dataset.root={camvid_root}"), "val", False)
    with pytest.raises(DataError, match="single-channel"):
        ds.load_label(0)


def test_mapillary_missing_config_and_bad_version(make_cfg, make_mapillary) -> None:
    root = make_mapillary("v1.2")
    with pytest.raises(ConfigError, match="dataset.version=v3"):
        build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}", "dataset.version=v3"), "train", False)
    with pytest.raises(DataError, match="config_v2.0.json: Mapillary config not found"):
        build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}", "dataset.version=v2.0"), "train", False)
    (root / "config_v1.2.json").write_text("{not json")
    with pytest.raises(DataError, match="not a Mapillary config"):
        build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}"), "train", False)


def test_mapillary_index_past_config_is_unknown(make_cfg, make_mapillary) -> None:
    root = make_mapillary("v1.2")
    write_label(root / "validation/v1.2/labels/img2.png", [(16, 50)], palette=[(i, i, i) for i in range(51)])
    ds = build_dataset(make_cfg("dataset=mapillary", f"dataset.root={root}"), "val", False)
    with pytest.raises(DataError, match=r"ids \[50\] are outside the mapillary mapping"):
        ds.load_label(0)
    assert np.all(ds.lut[8:] == -1)


@pytest.mark.parametrize("policy", ["error", "ignore"])
def test_negative_label_ids_are_unknown_not_wrapped_around(make_cfg, camvid_root: Path, policy: str) -> None:
    # camvid's LUT ends with UNKNOWN entries: a -245 would index lut[11] = 255 (ignore), a -1 lut[255]
    ds = build_dataset(
        make_cfg("dataset=camvid", f"dataset.root={camvid_root}", f"dataset.unknown_ids={policy}"), "val", False
    )
    lut = ds.lut_for(camvid_root / "valannot/x.png")
    raw = np.array([[0, 3, -245, -256]], dtype=np.int32)  # -256 would index lut[0] = class 0
    if policy == "error":
        with pytest.raises(DataError, match=r"x\.png: label ids \[-256, -245\] are outside the camvid mapping"):
            ds.map_ids(raw, lut, camvid_root / "valannot/x.png")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ds.map_ids(raw, lut, camvid_root / "valannot/x.png").tolist() == [[0, 3, 255, 255]]


def test_a_negative_lut_key_is_refused() -> None:
    from rspnet.data.base import make_lut

    with pytest.raises(ValueError, match="-1 is outside"):
        make_lut({-1: 0})


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with no pixel data (enough for PIL to size it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


EMPTY_OR_HUGE = {
    "0 bytes": (b"", "cannot read image: empty file (0 bytes)"),
    "0x0 pixels": (_png_header(0, 0), "cannot read image"),
    "400M pixels (PIL error)": (_png_header(20000, 20000), "too large to read safely"),
    "100M pixels (PIL only warns)": (_png_header(10000, 10000), "too large to read safely"),
}


@pytest.mark.parametrize("case", EMPTY_OR_HUGE)
@pytest.mark.parametrize("reader", ["dataset", "predict"])
def test_empty_and_bomb_sized_images_are_one_error_naming_the_file(
    make_cfg, camvid_root: Path, case: str, reader: str
) -> None:
    from rspnet.data.images import read_rgb

    content, expected = EMPTY_OR_HUGE[case]
    path = camvid_root / "val/c.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        if reader == "dataset":
            build_dataset(make_cfg("dataset=camvid", f"dataset.root={camvid_root}"), "val", False)[0]
        else:
            read_rgb(path)
    assert one_line(e).startswith(f"{path}: ") and expected in one_line(e)
