"""`stage=data_stats`: per-split image counts and mapped pixel counts -> `data_stats.json`.

Counts are taken at the label files' own resolution with no transforms, so they show
exactly what the label mapping does (the counting and the weights: `rspnet.data.stats`).
Per class it also counts the images holding the class and their labelled pixels, which
SegNet's median-frequency balancing needs (both class-weight vectors are written too), and the
mean width of its horizontal runs in pixels (how thin the class is at the label resolution).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from omegaconf import DictConfig

from rspnet.data import available_splits, build_dataset, dataset_module
from rspnet.data.stats import split_stats
from rspnet.errors import DataError
from rspnet.utils.io import atomic_write_json
from rspnet.utils.runtime import output_dir

log = logging.getLogger(__name__)


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
