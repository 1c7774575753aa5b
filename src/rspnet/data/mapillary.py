"""Mapillary Vistas v1.2 (66 classes) / v2.0 (124) mapped BY NAME to the 19 Cityscapes classes.

Layout: `root/{training,validation,testing}/images/*.jpg`,
`root/{training,validation}/<version>/labels/*.png` (palette/index PNGs: pixel = class
index into `root/config_<version>.json` "labels"; RGB colour labels are decoded through
the config's colours). Names not in the table below map to 255 (ignore).

Ambiguous names, and why (following the Cityscapes class definitions):
* lane / crosswalk / arrow markings (`marking--*`, `marking-only--*`), manholes, catch
  basins, potholes, bike and service lanes, plain crosswalks, road shoulders -> road:
  Cityscapes labels markings and fixtures in the road surface as road.
* curbs, curb cuts, pedestrian areas, traffic islands -> sidewalk: the Cityscapes sidewalk
  includes the delimiting curb; traffic islands are raised pedestrian areas.
* parking, parking aisles, driveways, rail tracks -> 255: Cityscapes `parking` and
  `rail track` are void (ignoreInEval), so no train id exists for them.
* utility poles, pole groups, street lights, traffic-sign frames -> pole: Cityscapes `pole`
  covers sign/light poles and their mountings (a pole group is annotated as pole there).
* traffic-sign backs (and direction / temporary / information-parking signs) -> traffic
  sign (Cityscapes annotates sign backs as traffic sign); non-traffic signs
  (`object--sign--*`: store, advertisement, ...), billboards, banners -> 255.
* guard rails -> 255 (void `guard rail` in Cityscapes); other/temporary barriers,
  concrete blocks, road medians/separators -> 255 (no clear Cityscapes class).
* garages -> building; bridges and tunnels -> 255 (void in Cityscapes).
* sand -> terrain (Cityscapes terrain includes soil and sand); snow, mountain, water -> 255.
* person groups -> person and vehicle groups -> car (Cityscapes `*group` regions carry
  the class label); all riders (bicyclist, motorcyclist, other) -> rider; on-rails -> train.
* caravans, trailers, boats, other/slow-wheeled vehicles -> 255 (void `caravan`/`trailer`
  in Cityscapes); ego vehicle, car mount and other void classes -> 255.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rspnet.data.base import IGNORE, SegDataset, check_root, make_lut, pair_files
from rspnet.data.cityscapes import CLASSES, PALETTE
from rspnet.errors import ConfigError, DataError

VERSIONS = ("v1.2", "v2.0")
FOLDERS = {"train": "training", "val": "validation", "test": "testing"}

# exact Vistas names (both versions) -> Cityscapes class name
EXACT: dict[str, str] = {
    "construction--flat--road": "road",
    "construction--flat--bike-lane": "road",
    "construction--flat--service-lane": "road",
    "construction--flat--crosswalk-plain": "road",
    "construction--flat--road-shoulder": "road",
    "object--manhole": "road",
    "object--catch-basin": "road",
    "object--pothole": "road",
    "construction--flat--sidewalk": "sidewalk",
    "construction--flat--pedestrian-area": "sidewalk",
    "construction--flat--curb-cut": "sidewalk",
    "construction--flat--traffic-island": "sidewalk",
    "construction--barrier--curb": "sidewalk",
    "construction--structure--building": "building",
    "construction--structure--garage": "building",
    "construction--barrier--wall": "wall",
    "construction--barrier--fence": "fence",
    "object--support--pole": "pole",
    "object--support--pole-group": "pole",
    "object--support--utility-pole": "pole",
    "object--support--traffic-sign-frame": "pole",
    "object--street-light": "pole",
    "object--traffic-light": "traffic light",
    "nature--vegetation": "vegetation",
    "nature--terrain": "terrain",
    "nature--sand": "terrain",
    "nature--sky": "sky",
    "human--person": "person",
    "object--vehicle--car": "car",
    "object--vehicle--vehicle-group": "car",
    "object--vehicle--truck": "truck",
    "object--vehicle--bus": "bus",
    "object--vehicle--on-rails": "train",
    "object--vehicle--motorcycle": "motorcycle",
    "object--vehicle--bicycle": "bicycle",
}
# name families (v2.0 splits these into many sub-classes) -> Cityscapes class name
PREFIXES: tuple[tuple[str, str], ...] = (
    ("marking--", "road"),
    ("marking-only--", "road"),
    ("object--traffic-light--", "traffic light"),
    ("object--traffic-sign--", "traffic sign"),
    ("human--person--", "person"),
    ("human--rider--", "rider"),
)


def cityscapes_class(name: str) -> str | None:
    """The Cityscapes class a Vistas label name maps to, or None (-> 255)."""
    if name in EXACT:
        return EXACT[name]
    return next((cls for prefix, cls in PREFIXES if name.startswith(prefix)), None)


def load_config(root: Path, version: str) -> list[dict]:
    """The `labels` list of `root/config_<version>.json` (each with name and color)."""
    path = root / f"config_{version}.json"
    if not path.is_file():
        raise DataError(f"{path}: Mapillary config not found; check dataset.root and dataset.version={version}")
    try:
        labels = json.loads(path.read_text())["labels"]
        if not isinstance(labels, list) or not labels:
            raise TypeError("labels must be a non-empty list")
        for i, lb in enumerate(labels):
            if not isinstance(lb.get("name"), str):
                raise KeyError(f"labels[{i}].name")
            colour = lb.get("color")
            if colour is not None and not (
                isinstance(colour, list)
                and len(colour) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)
            ):
                raise KeyError(f"labels[{i}].color must be [r, g, b], ints 0..255")  # or absent
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a Mapillary config (need labels[].name, color): {e}") from e
    return labels


def _version(dcfg: Any) -> str:
    version = str(dcfg.get("version", "v1.2"))
    if version not in VERSIONS:
        raise ConfigError(f"dataset.version={version} is unknown for mapillary; use v1.2 or v2.0")
    return version


class MapillaryDataset(SegDataset):
    """Vistas split with a name-based LUT (index -> train id); colour labels supported."""

    def __init__(self, items: list, labels: list[dict], **kwargs: Any) -> None:
        super().__init__("mapillary", items, CLASSES, PALETTE, **kwargs)
        index = {name: i for i, name in enumerate(CLASSES)}
        self.lut = make_lut(
            {i: index[c] if (c := cityscapes_class(lb["name"])) else IGNORE for i, lb in enumerate(labels)},
            size=max(256, len(labels)),
        )
        # (indices past the config's labels stay UNKNOWN in the LUT)
        # packed RGB -> class index, for colour-coded labels
        self.colours = {
            (int(r) << 16) | (int(g) << 8) | int(b): i
            for i, lb in enumerate(labels)
            if lb.get("color")
            for r, g, b in [lb["color"]]
        }

    def lut_for(self, label_path: Path) -> np.ndarray:
        """The name-based LUT (same for every file)."""
        return self.lut

    def decode_label(self, raw: np.ndarray, label_path: Path) -> np.ndarray:
        """Index labels pass through; RGB labels are decoded with the config colours."""
        if raw.ndim == 2:
            return raw
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise DataError(f"{label_path}: label must be an index PNG or RGB, got shape {raw.shape}")
        packed = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
        keys, inverse = np.unique(packed, return_inverse=True)
        # colours not in the config become an index past the labels, i.e. unknown
        idx = np.array([self.colours.get(int(k), len(self.lut)) for k in keys], dtype=np.int64)
        return idx[inverse].reshape(packed.shape)


def available_splits(dcfg: Any) -> list[str]:
    """Splits whose label folder exists (Vistas `testing` has no labels)."""
    root, version = check_root(dcfg.get("root"), "mapillary"), _version(dcfg)
    return [s for s, f in FOLDERS.items() if (root / f / version / "labels").is_dir()]


def build(dcfg: Any, split: str, transform: Any, seed: int) -> MapillaryDataset:
    """Vistas `split` (train -> training, val -> validation, test -> testing)."""
    root, version = check_root(dcfg.get("root"), "mapillary"), _version(dcfg)
    if split not in FOLDERS:
        raise ConfigError(f"split={split} is unknown for dataset=mapillary; use train, val or test")
    labels = load_config(root, version)
    label_dir = root / FOLDERS[split] / version / "labels"

    def label_for(img: Path) -> Path | None:
        path = label_dir / f"{img.stem}.png"
        return path if path.is_file() else None

    items = pair_files(
        root / FOLDERS[split] / "images", "*.jpg", label_for, split, required=split != "test" or label_dir.is_dir()
    )
    return MapillaryDataset(items, labels, transform=transform, unknown_ids=dcfg.get("unknown_ids", "error"))
