"""Type check of the composed config: a wrong value is one ConfigError naming its key.

Hydra parses `model.layers=abc` as the string "abc"; without this pass the error would
surface deep in model construction as a traceback. Each entry names a key and the kind of
value it takes; keys absent from the composed config (other datasets, later additions)
are skipped, so the table only has to cover what the groups define.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from rspnet.errors import ConfigError

Check = tuple[Callable[[Any], bool], str]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _optional(check: Check) -> Check:
    return (lambda v: v is None or check[0](v)), f"{check[1]} or null"


def _list(item: Check, items: str, size: int | None = None) -> Check:
    """A non-empty list (of `size` entries when given) whose entries pass `item`, described as `items`."""
    what = f"a list of {size} {items}" if size else f"a list of {items}"
    return (
        lambda v: (
            isinstance(v, (list, tuple, ListConfig))
            and (size is None or len(v) == size)
            and len(v) > 0
            and all(item[0](x) for x in v)
        )
    ), what


def _choice(*options: str) -> Check:
    return (lambda v: v in options), "one of " + " | ".join(options)


POS_INT: Check = (lambda v: _int(v) and v > 0, "a positive integer")
NONNEG_INT: Check = (lambda v: _int(v) and v >= 0, "an integer >= 0")
INT: Check = (_int, "an integer")
NUM: Check = (_num, "a number")
NONNEG: Check = (lambda v: _num(v) and v >= 0, "a number >= 0")
POSITIVE: Check = (lambda v: _num(v) and v > 0, "a positive number")
FRACTION: Check = (lambda v: _num(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)")
BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
STR: Check = (lambda v: isinstance(v, str), "a string")
# Lightning's limit_*_batches: a count (int) or a fraction of the loader (float)
LIMIT: Check = _optional((lambda v: _num(v) and v >= 0, "a batch count or fraction >= 0"))

SCHEMA: dict[str, Check] = {
    "seed": INT,
    "checkpoint.every_n_train_steps": _optional(POS_INT),
    "checkpoint.save_top_k": (lambda v: _int(v) and v >= -1, "an integer >= -1 (-1: every epoch)"),
    "checkpoint.filename": STR,
    "tags": (
        lambda v: isinstance(v, (list, ListConfig)) and all(isinstance(t, (str, int)) for t in v),
        "a list of labels",
    ),
    "print_config": BOOL,
    **{
        f"model.{k}": POS_INT
        for k in (
            "base_width",
            "search_layers",
            "layers",
            "cells_per_node",
            "head_channels",
            "ocr_mid_channels",
            "ocr_key_channels",
        )
    },
    "model.scales": _list(POS_INT, "positive integers"),
    "dataset.num_classes": POS_INT,
    "dataset.ignore_index": INT,
    "dataset.image_size": _list(POS_INT, "positive integers", 2),
    "dataset.crop_size": _list(POS_INT, "positive integers", 2),
    "dataset.num_train": POS_INT,
    "dataset.num_val": POS_INT,
    "dataset.scale_range": _list(POSITIVE, "positive numbers", 2),
    "dataset.hflip": BOOL,
    "dataset.color_jitter": _optional(_list(NONNEG, "numbers >= 0", 4)),
    "dataset.resize_long": _optional(POS_INT),
    "dataset.eval_scale": _optional(POSITIVE),
    "dataset.batch_size": POS_INT,
    "dataset.val_batch_size": POS_INT,
    "dataset.num_workers": NONNEG_INT,
    "dataset.pin_memory": BOOL,
    "dataset.unknown_ids": _choice("error", "ignore"),
    **{
        f"search.{k}": NONNEG
        for k in (
            "weight_lr",
            "weight_lr_min",
            "weight_momentum",
            "weight_wd",
            "arch_lr",
            "arch_wd",
            "arch_momentum",
            "arch_adam_lr",
        )
    },
    "search.arch_adam_betas": _list((lambda v: _num(v) and 0 <= v < 1, ""), "numbers in [0, 1)", 2),
    "search.arch_optim": _choice("sgd", "adam"),
    "search.second_order": BOOL,
    "search.warmup_epochs": NONNEG_INT,
    "search.arch_split": FRACTION,
    "search.grad_clip": _optional(NONNEG),
    "search.skip_nonfinite": BOOL,
    "search.target_params": _optional(POSITIVE),
    "search.target_gmacs": _optional(POSITIVE),
    "search.target_latency_ms": _optional(POSITIVE),
    "search.target_weight": NONNEG,
    "search.latency_lut": STR,
    "search.latency_threads": _optional(POS_INT),
    "search.combine_mode": _choice("max_size_cycle", "min_size", "max_size", "sequential"),
    "search.null": (lambda v: isinstance(v, bool) or str(v) in ("labels", "grad"), "true, false, labels or grad"),
    "search.select": _choice("argmax", "perturb"),
    "search.perturb_split": _choice("arch", "select"),
    "search.perturb_retune_steps": NONNEG_INT,
    "search.shrink_every": NONNEG_INT,
    "search.shrink_batches": _optional(POS_INT),
    "search.shrink_min_ops": POS_INT,
    "macro.lookback": _optional(POS_INT),
    "macro.top_k": POS_INT,
    "macro.score_epochs": POS_INT,
    "macro.mlp_hidden": POS_INT,
    "macro.select": _choice("score", "perturb"),
    "macro.perturb_split": _choice("arch", "select"),
    "macro.perturb_batches": _optional(POS_INT),
    "macro.perturb_metric": _choice("loss", "miou"),
    **{f"train.{k}": NONNEG for k in ("lr", "momentum", "weight_decay", "poly_power", "ohem_thresh")},
    "train.ohem": BOOL,
    "train.ohem_min_kept": POS_INT,
    "train.aux_weight": _optional(NONNEG),
    "train.init_ckpt": _optional(STR),
    "train.init_skip": _optional(_choice("classifiers")),
    "inference.mode": _choice("whole", "slide", "multiscale_flip"),
    "inference.slide_crop": _optional(_list(POS_INT, "positive integers", 2)),
    "inference.slide_stride": _optional(_list(POS_INT, "positive integers", 2)),
    "inference.sw_batch": POS_INT,
    "inference.scales": _list(POSITIVE, "positive numbers"),
    "train.channels_last": BOOL,
    "train.compile": BOOL,
    "rsp.enabled": BOOL,
    "rsp.shuffle": BOOL,
    "head.aux_weight": NONNEG,
    **{f"stage.{k}": NONNEG_INT for k in ("cell_search_epochs", "macro_search_epochs", "train_epochs")},
    "trainer.max_epochs": _optional((lambda v: _int(v) and v >= -1, "an integer >= -1")),
    "trainer.min_epochs": _optional(NONNEG_INT),
    "trainer.max_steps": (lambda v: _int(v) and v >= -1, "an integer >= -1"),
    **{f"trainer.limit_{k}_batches": LIMIT for k in ("train", "val", "test", "predict")},
    "trainer.num_nodes": POS_INT,
    "trainer.num_sanity_val_steps": (lambda v: _int(v) and v >= -1, "an integer >= -1"),
    "trainer.log_every_n_steps": POS_INT,
    "trainer.accumulate_grad_batches": POS_INT,
    "trainer.check_val_every_n_epoch": _optional(POS_INT),
    "trainer.fast_dev_run": (lambda v: isinstance(v, bool) or (_int(v) and v >= 0), "true, false or a batch count"),
    **{
        f"trainer.{k}": BOOL
        for k in (
            "sync_batchnorm",
            "enable_progress_bar",
            "enable_model_summary",
            "enable_checkpointing",
            "detect_anomaly",
        )
    },
}


_MISSING = object()
# keys that moved to another group: old key -> new key (an override of the old one is one clear error)
MOVED = {
    "train.inference": "inference.mode",
    "train.slide_crop": "inference.slide_crop",
    "train.slide_stride": "inference.slide_stride",
    "train.sw_batch": "inference.sw_batch",
    "train.scales": "inference.scales",
}


def check_moved(overrides: Sequence[str]) -> None:
    """One ConfigError naming the new key for an override of a moved one (`train.inference=slide`)."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in MOVED:
            also = f" (or the preset inference={value})" if key == "train.inference" else ""
            raise ConfigError(f"{key} moved to the inference group: use {MOVED[key]}={value}{also}")


def validate_config(cfg: DictConfig) -> None:
    """Raise one ConfigError naming the first key whose value has the wrong type or range."""
    for key, (ok, expected) in SCHEMA.items():
        try:
            value = OmegaConf.select(cfg, key, default=_MISSING)
        except Exception as e:  # noqa: BLE001 - omegaconf raises several interpolation error types
            raise ConfigError(f"{key}: cannot resolve its value ({type(e).__name__}: {e})") from e
        if value is _MISSING:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not ok(value):
            raise ConfigError(f"{key}={_show(value)} is invalid: expected {expected}")


def _show(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)
