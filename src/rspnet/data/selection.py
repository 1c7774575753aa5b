"""Honest model selection: which split picks checkpoints (and search paths), never the reported one.

`train.select`:
* `holdout` (default): a seeded slice of `train` (`train.holdout_fraction`, `train.holdout_seed`)
  is held out from training and the searches; validation and the best checkpoint use it, and `val` is reported once at the end (stage=eval).
* `last`: no selection; the last checkpoint is reported. With `train.holdout_fraction > 0`
  the slice is still held out and validated on (monitoring only); with 0 all of `train` is used.
* `val`: validate and select on `val`, the split that is reported (optimistic; labelled so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rspnet.errors import ConfigError, DataError

SELECTS = ("holdout", "last", "val")


@dataclass(frozen=True)
class Selection:
    """The `train.select` policy with its held-out slice parameters."""

    select: str = "holdout"
    fraction: float = 0.1
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Selection:
        """Read and check `train.select`, `train.holdout_fraction`, `train.holdout_seed`."""
        t = cfg.get("train") or {}
        select = str(t.get("select", "holdout"))
        if select not in SELECTS:
            raise ConfigError(f"train.select={select} is unknown; use one of: {', '.join(SELECTS)}")
        fraction = 0.0 if select == "val" else float(t.get("holdout_fraction", 0.1))
        if select == "holdout" and not 0.0 < fraction < 1.0:
            raise ConfigError(f"train.holdout_fraction={fraction} must be in (0, 1) with train.select=holdout")
        if select == "last" and not 0.0 <= fraction < 1.0:
            raise ConfigError(f"train.holdout_fraction={fraction} must be in [0, 1) with train.select=last")
        return cls(select, fraction, int(t.get("holdout_seed", 0) or 0))

    @property
    def holds_out(self) -> bool:
        """True when a slice of `train` is held out."""
        return self.fraction > 0.0

    @property
    def split(self) -> str | None:
        """Name of the split validated on during training: holdout, val, or None (no validation)."""
        return "holdout" if self.holds_out else ("val" if self.select == "val" else None)

    def describe(self, num_holdout: int | None = None) -> str:
        """One line for train.json / logs: what picked the checkpoint."""
        if self.select == "val":
            return "val — selected on the reported split (optimistic)"
        slice_ = (
            f"held-out {self.fraction:g} of train (seed {self.seed}"
            f"{f', {num_holdout} images' if num_holdout is not None else ''})"
        )
        if self.select == "last":
            return "none — last checkpoint" + (f"; validation monitors the {slice_}" if self.holds_out else "")
        return slice_


def carve_holdout(num_train: int, sel: Selection, dataset: str) -> dict[str, Any]:
    """Deterministic split of range(num_train) into {"fit", "holdout"} index lists (sorted, disjoint)."""
    if num_train < 2:
        raise DataError(
            f"dataset={dataset}: the train split has {num_train} image(s); holding out a slice "
            "needs >= 2 (or set train.select=last train.holdout_fraction=0)"
        )
    perm = np.random.default_rng(sel.seed).permutation(num_train)
    n_hold = min(max(int(round(num_train * sel.fraction)), 1), num_train - 1)
    return {
        "seed": sel.seed,
        "fraction": sel.fraction,
        "num_train": num_train,
        "holdout": sorted(int(i) for i in perm[:n_hold]),
        "fit": sorted(int(i) for i in perm[n_hold:]),
    }
