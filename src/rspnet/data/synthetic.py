"""Procedural street scenes labelled with the 19 Cityscapes train ids (no files needed).

A scene is drawn back to front: sky, buildings/walls and trees on the horizon, a road
trapezoid with sidewalks and terrain beside it, fences, poles with signs or traffic lights,
then vehicles, riders and persons sorted by depth; sometimes an ego-vehicle strip (255).
Every class has its own colour (Cityscapes palette) and stripe texture, plus noise and a
per-image brightness change, so a tiny net learns it quickly but not trivially.
Each sample is a pure function of (seed, split, index).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rspnet.data.base import IGNORE, SegDataset
from rspnet.data.cityscapes import CLASSES, PALETTE
from rspnet.errors import ConfigError

SPLITS = {"train": 0, "val": 1, "test": 2}
(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    LIGHT,
    SIGN,
    VEG,
    TERRAIN,
    SKY,
    PERSON,
    RIDER,
    CAR,
    TRUCK,
    BUS,
    TRAIN,
    MOTO,
    BIKE,
) = range(19)
# per-class stripe texture: (frequency along x, frequency along y) in cycles per pixel
_FREQ = np.random.default_rng(1234).uniform(-0.5, 0.5, size=(19, 2)).astype(np.float32)
_COLOURS = np.asarray(PALETTE, dtype=np.float32)


def _rect(lab: np.ndarray, y0: float, y1: float, x0: float, x1: float, cls: int) -> None:
    """Fill a rectangle (float coords, clipped) with `cls`."""
    h, w = lab.shape
    a, b = max(int(round(y0)), 0), min(int(round(y1)), h)
    c, d = max(int(round(x0)), 0), min(int(round(x1)), w)
    if a < b and c < d:
        lab[a:b, c:d] = cls


def _ellipse(lab: np.ndarray, cy: float, cx: float, ry: float, rx: float, cls: int) -> None:
    """Fill an axis-aligned ellipse with `cls`."""
    yy, xx = np.ogrid[: lab.shape[0], : lab.shape[1]]
    lab[((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0] = cls


def _objects(rng: np.random.Generator, h: int, w: int, horizon: float) -> list[tuple[float, Any]]:
    """Foreground objects as (depth key = bottom y, draw function), drawn far to near."""
    objs: list[tuple[float, Any]] = []
    for _ in range(rng.integers(1, 5)):  # vehicles on the road
        yb = rng.uniform(horizon + 0.15 * h, h)
        depth = (yb - horizon) / (h - horizon)  # 0 at horizon, 1 at the bottom
        cls = int(rng.choice([CAR, CAR, CAR, TRUCK, BUS, TRAIN, MOTO, BIKE]))
        size = {
            CAR: (0.2, 0.25),
            TRUCK: (0.3, 0.3),
            BUS: (0.35, 0.4),
            TRAIN: (0.3, 0.6),
            MOTO: (0.12, 0.08),
            BIKE: (0.12, 0.08),
        }[cls]
        vh, vw = size[0] * h * depth, size[1] * w * depth
        xc = rng.uniform(0.25, 0.75) * w

        def draw(lab, yb=yb, vh=vh, vw=vw, xc=xc, cls=cls):
            _rect(lab, yb - vh, yb, xc - vw / 2, xc + vw / 2, cls)
            if cls in (MOTO, BIKE):  # a rider sits on two-wheelers
                _ellipse(lab, yb - vh * 1.4, xc, vh * 0.7, vw * 0.3, RIDER)

        objs.append((yb, draw))
    for _ in range(rng.integers(0, 4)):  # persons on the sidewalks
        yb = rng.uniform(horizon + 0.1 * h, h)
        depth = (yb - horizon) / (h - horizon)
        ph, xc = 0.35 * h * depth, (rng.uniform(0.0, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)) * w
        objs.append((yb, lambda lab, yb=yb, ph=ph, xc=xc: _ellipse(lab, yb - ph / 2, xc, ph / 2, ph / 6, PERSON)))
    for _ in range(rng.integers(1, 4)):  # poles with a sign or a traffic light
        yb = rng.uniform(horizon + 0.05 * h, 0.9 * h)
        depth = (yb - horizon) / (h - horizon)
        xc = (rng.uniform(0.02, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 0.98)) * w
        ph, pw = (0.3 + 0.5 * depth) * h, max(1.0, 0.012 * w * (1 + 2 * depth))
        top = int(rng.choice([SIGN, LIGHT]))

        def draw(lab, yb=yb, ph=ph, pw=pw, xc=xc, top=top):
            _rect(lab, yb - ph, yb, xc - pw / 2, xc + pw / 2, POLE)
            bh, bw = (ph * 0.15, pw * 4) if top == SIGN else (ph * 0.25, pw * 2.5)
            _rect(lab, yb - ph - bh * 0.2, yb - ph + bh * 0.8, xc - bw / 2, xc + bw / 2, top)

        objs.append((yb, draw))
    return sorted(objs, key=lambda o: o[0])


def render(seed: int, split: str, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (image uint8 [H, W, 3], mask uint8 [H, W] of train ids / 255)."""
    h, w = size
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    lab = np.full((h, w), SKY, dtype=np.uint8)
    horizon = rng.uniform(0.35, 0.55) * h
    x = 0.0
    while x < w:  # buildings / walls / trees along the horizon
        bw = rng.uniform(0.08, 0.3) * w
        cls = int(rng.choice([BUILDING, BUILDING, BUILDING, WALL, VEG]))
        top = horizon - rng.uniform(0.1, 0.35 if cls != WALL else 0.12) * h
        if cls == VEG:
            _ellipse(lab, top + (horizon - top) / 2, x + bw / 2, (horizon - top) / 2 + 1, bw / 2, VEG)
            _rect(lab, top + (horizon - top) / 2, horizon, x, x + bw, VEG)
        else:
            _rect(lab, top, horizon, x, x + bw, cls)
        x += bw
    # ground: road trapezoid from a vanishing point, sidewalks beside it, terrain outside
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vx = rng.uniform(0.4, 0.6) * w
    t = np.clip((yy - horizon) / max(h - horizon, 1.0), 0.0, None)
    left, right = rng.uniform(0.0, 0.3) * w, rng.uniform(0.7, 1.0) * w
    half_side = rng.uniform(0.1, 0.25) * w
    road_l, road_r = vx + (left - vx) * t, vx + (right - vx) * t
    ground = yy >= horizon
    lab[ground] = TERRAIN
    lab[ground & (xx >= road_l - half_side * t) & (xx <= road_r + half_side * t)] = SIDEWALK
    lab[ground & (xx >= road_l) & (xx <= road_r)] = ROAD
    if rng.random() < 0.5:  # a low fence on one side
        side = rng.random() < 0.5
        fence = (
            ground
            & (yy < horizon + 0.08 * h)
            & ((xx < road_l - half_side * t) if side else (xx > road_r + half_side * t))
        )
        lab[fence] = FENCE
    for _, draw in _objects(rng, h, w, horizon):
        draw(lab)
    if rng.random() < 0.3:  # ego-vehicle bonnet: void, as in Cityscapes
        _rect(lab, h * (1 - rng.uniform(0.04, 0.1)), h, 0, w, IGNORE)
    return _paint(rng, lab, yy, xx), lab


def _paint(rng: np.random.Generator, lab: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Colour per class + class stripe texture + noise + global brightness -> uint8 RGB."""
    known = np.where(lab == IGNORE, 0, lab)
    colour = _COLOURS[known]
    colour[lab == IGNORE] = 20.0  # dark bonnet
    fx, fy = _FREQ[known, 0], _FREQ[known, 1]
    stripes = np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))[..., None]
    img = colour + 25.0 * stripes + rng.normal(0.0, 12.0, size=colour.shape)
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


class SyntheticDataset(SegDataset):
    """`num` procedural scenes of `size` for one split, cached per index."""

    def __init__(self, seed: int, split: str, num: int, size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__("synthetic", [(None, None)] * num, CLASSES, PALETTE, **kwargs)
        self.seed, self.split, self.size = int(seed), split, size
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = render(self.seed, self.split, index, self.size)
        return self._cache[index]

    def load_image(self, index: int) -> np.ndarray:
        """Generated image `index` (uint8 [H, W, 3])."""
        return self._scene(index)[0]

    def load_label(self, index: int) -> np.ndarray:
        """Generated train-id mask `index` (uint8 [H, W])."""
        return self._scene(index)[1]


def build(dcfg: Any, split: str, transform: Any, seed: int) -> SyntheticDataset:
    """Synthetic dataset for `split` (train: num_train scenes, val/test: num_val)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split} is unknown for dataset=synthetic; use train, val or test")
    size = tuple(int(v) for v in dcfg.image_size)
    if len(size) != 2 or min(size) < 8:
        raise ConfigError(f"dataset.image_size={list(size)} must be [H, W] with both >= 8")
    num = int(dcfg.num_train if split == "train" else dcfg.num_val)
    if num < 1:
        raise ConfigError(f"dataset.num_{'train' if split == 'train' else 'val'}={num}: the split is empty; use >= 1")
    return SyntheticDataset(
        seed,
        split,
        num,
        size,
        transform=transform,  # type: ignore[arg-type]
        unknown_ids=dcfg.get("unknown_ids", "error"),
    )


def available_splits(dcfg: Any) -> list[str]:
    """Synthetic data has a train and a val split (test = another val-sized draw)."""
    return ["train", "val"]
