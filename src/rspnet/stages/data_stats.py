"""`stage=data_stats`: per-split image counts and mapped pixel counts -> `data_stats.json`.

Counts are taken at the label files' own resolution with no transforms, so they show
exactly what the label mapping does. Files are processed in chunks by a process pool.
Per class it also counts the images holding the class and their labelled pixels, which
SegNet's median-frequency balancing needs (both class-weight vectors are written too), and the
mean width of its horizontal runs in pixels (how thin the class is at the label resolution).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from rspnet.data import available_splits, build_dataset, dataset_module
from rspnet.data.base import IGNORE, SegDataset
from rspnet.errors import DataError
from rspnet.losses import WEIGHTINGS, weights_from_stats
from rspnet.utils.config import output_dir
from rspnet.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)
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


def run(cfg: DictConfig) -> dict:
    """Count every split present on disk; write and return `data_stats.json`."""
    out = output_dir(cfg)
    module = dataset_module(cfg)
    workers = cfg.stage.get("workers") or os.cpu_count() or 1
    splits = available_splits(cfg)
    if not splits:
        raise DataError(f"dataset={cfg.dataset.name}: no split found under dataset.root={cfg.dataset.get('root')}")
    result: dict[str, Any] = {"dataset": str(cfg.dataset.name), "classes": list(module.CLASSES), "splits": {}}
    for split in splits:
        ds = build_dataset(cfg, split, train=False)
        result["splits"][split] = split_stats(ds, int(workers), split)
    atomic_write_json(out / "data_stats.json", result)
    for split, s in result["splits"].items():
        labelled = sum(s["pixels_per_class"])
        total = labelled + s["ignored_pixels"]
        empty = [c for c, n in zip(result["classes"], s["pixels_per_class"]) if n == 0]
        log.info(
            "%s/%s: %d images, %d pixels (%.1f%% ignored)%s",
            result["dataset"],
            split,
            s["num_images"],
            total,
            100.0 * s["ignored_pixels"] / max(total, 1),
            f", classes with no pixels: {', '.join(empty)}" if empty else "",
        )
    log.info("data stats written to %s", out / "data_stats.json")
    return result
