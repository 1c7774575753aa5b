"""Honest model selection: which split picks checkpoints (and search paths), never the reported one.

`train.select`:
* `holdout` (default): a slice of `train` is held out from training and the searches; validation and
  the best checkpoint use it, and `val` is reported once at the end (stage=eval).
* `last`: no selection; the last checkpoint is reported. With a slice (`train.holdout_fraction > 0` or
  `train.holdout_sequences`) it is still held out and validated on (monitoring only); else all of `train` is used.
* `val`: validate and select on `val`, the split that is reported (optimistic; labelled so).

The slice: a seeded random `train.holdout_fraction` of the frames (`train.holdout_seed`), or, with
`train.holdout_sequences=[NAME, ...]`, every frame of those whole sequences (CamVid: the frame-name
prefix, e.g. 0006R0). Frames of one video sequence are near-duplicates of their neighbours, so a
random slice shares every street with training and flatters the selection score; a held-out
sequence is unseen streets, as a benchmark's test split is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
    sequences: tuple[str, ...] = ()  # whole sequences held out (then `fraction` is unused: 0)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Selection:
        """Read and check `train.select`, `train.holdout_fraction`, `train.holdout_seed`, `train.holdout_sequences`."""
        t = cfg.get("train") or {}
        select = str(t.get("select", "holdout"))
        if select not in SELECTS:
            raise ConfigError(f"train.select={select} is unknown; use one of: {', '.join(SELECTS)}")
        seed = int(t.get("holdout_seed", 0) or 0)
        sequences = _names(t.get("holdout_sequences"))
        if select == "val":
            return cls(select, 0.0, seed)
        if sequences:
            return cls(select, 0.0, seed, sequences)
        fraction = float(t.get("holdout_fraction", 0.1))
        if select == "holdout" and not 0.0 < fraction < 1.0:
            raise ConfigError(f"train.holdout_fraction={fraction} must be in (0, 1) with train.select=holdout")
        if select == "last" and not 0.0 <= fraction < 1.0:
            raise ConfigError(f"train.holdout_fraction={fraction} must be in [0, 1) with train.select=last")
        return cls(select, fraction, seed)

    def with_slice(self, state: dict[str, Any]) -> Selection:
        """This policy with the slice parameters of a carved (or checkpointed) slice `state`."""
        return replace(
            self,
            fraction=float(state["fraction"]),
            seed=int(state["seed"]),
            sequences=tuple(state.get("sequences", ())),
        )

    @property
    def holds_out(self) -> bool:
        """True when a slice of `train` is held out."""
        return self.fraction > 0.0 or bool(self.sequences)

    @property
    def split(self) -> str | None:
        """Name of the split validated on during training: holdout, val, or None (no validation)."""
        return "holdout" if self.holds_out else ("val" if self.select == "val" else None)

    def describe(self, num_holdout: int | None = None) -> str:
        """One line for train.json / logs: what picked the checkpoint."""
        if self.select == "val":
            return "val — selected on the reported split (optimistic)"
        count = f"{num_holdout} images" if num_holdout is not None else ""
        if self.sequences:
            plural = "s" if len(self.sequences) > 1 else ""
            slice_ = f"held-out sequence{plural} {', '.join(self.sequences)} of train" + (
                f" ({count})" if count else ""
            )
        else:
            slice_ = f"held-out {self.fraction:g} of train (seed {self.seed}{', ' + count if count else ''})"
        if self.select == "last":
            # the slice stays out of training; when validation runs (select/* in the logs), it is scored there
            return "none — last checkpoint" + (f"; left out of training: the {slice_}" if self.holds_out else "")
        return slice_


def _names(value: Any) -> tuple[str, ...]:
    """`train.holdout_sequences` (null, one name or a list of names) as a tuple of names."""
    if value is None or value == "":
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        return (str(value),)
    return tuple(str(v) for v in value)


def carve_holdout(
    num_train: int, sel: Selection, dataset: str, sequences: Sequence[str] | None = None
) -> dict[str, Any]:
    """Deterministic split of range(num_train) into {"fit", "holdout"} index lists (sorted, disjoint).

    With `sel.sequences` the slice is every frame whose sequence (`sequences[i]`, the train split's
    per-frame names; None when the dataset has none) is one of them.
    """
    if sel.sequences:
        return carve_sequences(num_train, sel, dataset, sequences)
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


def carve_sequences(num_train: int, sel: Selection, dataset: str, sequences: Sequence[str] | None) -> dict[str, Any]:
    """The slice of whole sequences `sel.sequences`; one-line ConfigErrors for a dataset without
    sequences, a name that is not a sequence of train, or no sequence left to train on."""
    option = f"train.holdout_sequences=[{','.join(sel.sequences)}]"
    if sequences is None or len(sequences) != num_train:
        raise ConfigError(
            f"{option}: dataset={dataset} has no sequence information in its frame names; "
            "hold out a random slice instead (train.holdout_sequences=null, train.holdout_fraction)"
        )
    available = sorted(set(sequences))
    unknown = [s for s in sel.sequences if s not in available]
    if unknown:
        raise ConfigError(
            f"{option}: {', '.join(unknown)} is not a sequence of dataset={dataset}'s train split; "
            f"its sequences: {', '.join(available)}"
        )
    held = [s in sel.sequences for s in sequences]
    if all(held):
        raise ConfigError(f"{option} holds out every sequence of train ({', '.join(available)}); leave one to train on")
    return {
        "seed": sel.seed,
        "fraction": 0.0,
        "sequences": list(sel.sequences),
        "num_train": num_train,
        "holdout": [i for i, h in enumerate(held) if h],
        "fit": [i for i, h in enumerate(held) if not h],
    }
