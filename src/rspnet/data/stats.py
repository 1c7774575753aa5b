"""Pixel statistics of a dataset split and the class-balancing weights made from them.

`count_pixels` counts, per class, the pixels, the images holding the class, the labelled pixels of
those images and the horizontal runs (how thin the class is), at the label files' own resolution
with no transforms, in a process pool. `weights_from_stats` turns one split's counts into SegNet's
median-frequency weights or ENet's `1 / ln(c + p_class)`; `resolve_class_weights` reads
`train.class_weights` (none | auto | PATH to a data_stats.json) for the train stage.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from rspnet.data import build_dataset
from rspnet.data.base import IGNORE, SegDataset
from rspnet.errors import ArtifactError, ConfigError
from rspnet.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)
WEIGHTINGS = ("median_freq", "enet")
ENET_C = 1.02  # ENet (Paszke et al. 2016): bounds the weights to [1, 1/ln(1.02) = 50.5]
_DATASET: SegDataset | None = None  # the dataset a pool worker counts (set by the initializer)


def _init_worker(dataset: SegDataset) -> None:
    global _DATASET
    _DATASET = dataset


ROWS = 4  # pixels; images holding the class; labelled pixels of those images; horizontal runs


def count_chunk(dataset: SegDataset | None, indices: list[int]) -> np.ndarray:
    """Counts [4, K + 1] over the labels of `indices` (column K = ignored).

    Rows: pixels per class; images holding the class; labelled pixels of those images; horizontal
    runs of the class (maximal same-class stretches of a label row: pixels / runs is how wide the
    class is, e.g. ~2 px for CamVid's poles at 240x320).
    """
    ds = dataset if dataset is not None else _DATASET
    assert ds is not None
    k = ds.num_classes + 1
    counts = np.zeros((ROWS, k), dtype=np.int64)
    for i in indices:
        mask = ds.load_label(i)
        if mask is None:  # unlabelled split (e.g. a benchmark test set)
            continue
        labels = np.where(mask == IGNORE, ds.num_classes, mask)
        pixels = np.bincount(labels.ravel(), minlength=k)[:k]
        present = pixels > 0
        present[-1] = False  # "ignored" is not a class
        starts = np.ones(labels.shape, dtype=bool)
        starts[:, 1:] = labels[:, 1:] != labels[:, :-1]
        counts[0] += pixels
        counts[1] += present
        counts[2] += present * int(pixels[:-1].sum())
        counts[3] += np.bincount(labels[starts], minlength=k)[:k]
    return counts


def _pool_chunk(indices: list[int]) -> tuple[int, np.ndarray]:
    return len(indices), count_chunk(None, indices)


def count_pixels(
    ds: SegDataset, workers: int, chunk: int = 8, desc: str = "", indices: list[int] | None = None
) -> np.ndarray:
    """`count_chunk` counts over the dataset (or `indices`), in a pool of `workers` processes (1 = in-process)."""
    todo = list(range(len(ds))) if indices is None else list(indices)
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    total = np.zeros((ROWS, ds.num_classes + 1), dtype=np.int64)
    with tqdm(total=len(todo), desc=desc, unit="img", leave=False) as bar:
        if workers <= 1 or len(chunks) < 2:
            for c in chunks:
                total += count_chunk(ds, c)
                bar.update(len(c))
            return total
        # DataLoader's choice on Linux (fork); spawn elsewhere
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(workers, len(chunks)), initializer=_init_worker, initargs=(ds,)) as pool:
            for n, counts in pool.imap_unordered(_pool_chunk, chunks):
                total += counts
                bar.update(n)
    return total


def split_stats(ds: SegDataset, workers: int, split: str, indices: list[int] | None = None) -> dict[str, Any]:
    """{"num_images", "pixels_per_class", "ignored_pixels", presence counts, class weights} for one split."""
    counts = count_pixels(ds, workers, desc=f"{ds.name}/{split}", indices=indices)
    stats: dict[str, Any] = {
        "num_images": len(ds) if indices is None else len(indices),
        "pixels_per_class": [int(v) for v in counts[0, :-1]],
        "ignored_pixels": int(counts[0, -1]),
        "images_with_class": [int(v) for v in counts[1, :-1]],
        "pixels_of_images_with_class": [int(v) for v in counts[2, :-1]],
        "horizontal_runs_per_class": [int(v) for v in counts[3, :-1]],
        "mean_run_width_px": [round(float(p / r), 2) if r else None for p, r in zip(counts[0, :-1], counts[3, :-1])],
    }
    if all(label is None for _, label in ds.items) and ds.items[0][0] is not None:
        stats["labelled"] = False
    elif sum(stats["pixels_per_class"]) > 0:
        stats["class_weights"] = {s: [round(w, 6) for w in weights_from_stats(stats, s)] for s in WEIGHTINGS}
    return stats


def cached_training_stats(cfg: DictConfig, datamodule: Any, path: Path) -> dict[str, Any]:
    """`split_stats` of the images trained on (held-out slice excluded), cached at `path`."""
    indices = datamodule.fit_indices()
    key = {"dataset": str(cfg.dataset.name), "root": str(cfg.dataset.get("root")), "indices": indices}
    if path.is_file():
        cached = read_json(path, "class statistics")
        if cached.get("key") == key:
            return cached["stats"]
    workers = int(cfg.stage.get("workers") or os.cpu_count() or 1)
    ds = build_dataset(cfg, "train", train=False)
    stats = split_stats(ds, workers, "train", indices)
    atomic_write_json(path, {"key": key, "stats": stats})
    return stats


def median_frequency_weights(pixels: list[int], image_pixels: list[int]) -> list[float]:
    """SegNet: w_c = median(freq) / freq_c, freq_c = pixels of c / labelled pixels of the images holding c.

    Classes with no pixel get weight 0 (they never occur as a target, so it does not matter).
    """
    freq = [p / n if p > 0 and n > 0 else 0.0 for p, n in zip(pixels, image_pixels)]
    present = sorted(f for f in freq if f > 0)
    if not present:
        raise ConfigError("class weights: the training split has no labelled pixel")
    mid = len(present) // 2
    median = present[mid] if len(present) % 2 else 0.5 * (present[mid - 1] + present[mid])
    return [median / f if f > 0 else 0.0 for f in freq]


def enet_weights(pixels: list[int], c: float = ENET_C) -> list[float]:
    """ENet: w_c = 1 / ln(c + p_c), p_c = pixels of class c / all labelled pixels."""
    total = sum(pixels)
    if total <= 0:
        raise ConfigError("class weights: the training split has no labelled pixel")
    return [1.0 / math.log(c + p / total) for p in pixels]


def weights_from_stats(stats: dict[str, Any], scheme: str) -> list[float]:
    """Weights of `scheme` from one split's statistics (pixels_per_class, pixels_of_images_with_class)."""
    if scheme == "median_freq":
        return median_frequency_weights(stats["pixels_per_class"], stats["pixels_of_images_with_class"])
    if scheme == "enet":
        return enet_weights(stats["pixels_per_class"])
    raise ConfigError(f"train.class_weighting={scheme} is unknown; use one of: {', '.join(WEIGHTINGS)}")


def read_stats_file(path: Path, num_classes: int) -> dict[str, Any]:
    """The `train` split statistics of a data_stats.json, with one clear error naming the file."""
    where = f"train.class_weights={path}"
    if not path.is_file():
        raise ConfigError(f"{where}: file not found; pass a data_stats.json written by stage=data_stats, or auto/none")
    try:
        data = read_json(path, "data_stats")
    except ArtifactError as e:
        raise ConfigError(f"{where}: {e}") from e
    try:
        stats = data["splits"]["train"]
        ok = all(len(stats[k]) == num_classes for k in ("pixels_per_class", "pixels_of_images_with_class"))
    except (KeyError, TypeError) as e:
        raise ConfigError(
            f"{where}: not a data_stats.json with train-split counts (missing {e}); "
            "re-run stage=data_stats with this version"
        ) from e
    if not ok:
        raise ConfigError(f"{where}: has counts for another number of classes than this dataset's {num_classes}")
    return stats


def resolve_class_weights(cfg: DictConfig, datamodule: Any, out: Path) -> list[float] | None:
    """`train.class_weights` (none | auto | PATH) with `train.class_weighting` -> weights, or None.

    auto counts the training images actually trained on (the held-out slice excluded) with the
    data_stats code and caches the counts in DIR/class_stats.json (reused on resume).
    """
    source = cfg.train.get("class_weights")
    if source in (None, "none", "None", False):
        return None
    scheme = str(cfg.train.get("class_weighting", "median_freq"))
    if scheme not in WEIGHTINGS:
        raise ConfigError(f"train.class_weighting={scheme} is unknown; use one of: {', '.join(WEIGHTINGS)}")
    if str(source) == "auto":
        stats = cached_training_stats(cfg, datamodule, out / "class_stats.json")
    else:
        stats = read_stats_file(Path(str(source)), datamodule.num_classes)
    weights = weights_from_stats(stats, scheme)
    log.info(
        "class weights (%s, from %s): %s",
        scheme,
        source,
        ", ".join(f"{n} {w:.2f}" for n, w in zip(datamodule.classes, weights)),
    )
    return weights
