"""Honest selection: the held-out slice of train (train.select) in the datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rspnet.data import build_datamodule
from rspnet.data.selection import Selection, carve_holdout
from rspnet.errors import ConfigError, DataError

SMALL = (
    "dataset.image_size=[32,64]",
    "dataset.crop_size=[32,64]",
    "dataset.num_train=20",
    "dataset.num_val=3",
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
)


def _dm(make_cfg, *overrides: str):
    dm = build_datamodule(make_cfg(*SMALL, *overrides))
    dm.setup("fit")
    return dm


def test_holdout_is_disjoint_deterministic_and_seeded(make_cfg) -> None:
    dm = _dm(make_cfg, "train.holdout_fraction=0.2", "train.holdout_seed=3")
    state = dm.holdout_state()
    assert len(state["holdout"]) == 4 and not set(state["holdout"]) & set(state["fit"])
    assert sorted(state["holdout"] + state["fit"]) == list(range(20)) and dm.fit_indices() == state["fit"]
    assert _dm(make_cfg, "train.holdout_fraction=0.2", "train.holdout_seed=3").holdout_state() == state
    assert (
        _dm(make_cfg, "train.holdout_fraction=0.2", "train.holdout_seed=4").holdout_state()["holdout"]
        != state["holdout"]
    )
    # the training seed does not move the slice (the same held-out images across training seeds)
    assert _dm(make_cfg, "train.holdout_fraction=0.2", "train.holdout_seed=3", "seed=7").holdout_state() == state
    # the loaders: training over the rest, validation over the slice
    assert list(dm.train_dataloader().dataset.indices) == state["fit"]
    assert list(dm.val_dataloader().dataset.indices) == state["holdout"]
    # the search halves split the training images only
    split = dm.split_state()
    assert sorted(split["weight"] + split["arch"]) == state["fit"] and split["holdout"] == state["holdout"]


def test_holdout_uses_the_eval_pipeline(make_cfg) -> None:
    dm = _dm(make_cfg, "dataset.scale_range=[0.5,0.5]")
    i = dm.holdout_state()["holdout"][0]
    x, y = dm.holdout_dataset[0]
    raw = dm.train_dataset.load_label(i)
    # not scaled / cropped / flipped: the mask is the stored label itself
    assert x.shape == (3, 32, 64) and torch.equal(y, torch.from_numpy(raw.astype(np.int64)))


def test_holdout_survives_state_dict_round_trip(make_cfg) -> None:
    dm = _dm(make_cfg)
    saved = dm.state_dict()
    other = _dm(make_cfg, "train.holdout_seed=9")
    assert other.holdout_state() != dm.holdout_state()
    other.load_state_dict(saved)
    assert other.holdout_state() == dm.holdout_state()
    assert list(other.val_dataloader().dataset.indices) == dm.holdout_state()["holdout"]
    assert other.split_state()["holdout"] == dm.holdout_state()["holdout"]  # the search split follows
    with pytest.raises(DataError, match="made for 20 train images"):
        _dm(make_cfg, "dataset.num_train=12").load_state_dict(saved)


def test_select_val_and_last(make_cfg) -> None:
    val = _dm(make_cfg, "train.select=val")
    assert val.holdout_state() is None and len(val.val_dataloader().dataset) == 3 and len(val.fit_indices()) == 20
    last = _dm(make_cfg, "train.select=last", "train.holdout_fraction=0")
    assert last.val_dataloader() == [] and last.fit_indices() == list(range(20))
    # the searches then score on the arch half (eval pipeline), never on val
    assert list(last.search_val_dataloader().dataset.indices) == last.split_state()["arch"]
    monitored = _dm(make_cfg, "train.select=last")
    assert len(monitored.val_dataloader().dataset) == 2  # slice held out for monitoring


def test_selection_options_are_checked(make_cfg) -> None:
    with pytest.raises(ConfigError, match="train.select=best is unknown"):
        build_datamodule(make_cfg("train.select=best"))
    with pytest.raises(ConfigError, match=r"train.holdout_fraction=0.0 must be in \(0, 1\)"):
        build_datamodule(make_cfg("train.holdout_fraction=0"))
    with pytest.raises(DataError, match="needs >= 2"):
        carve_holdout(1, Selection(), "synthetic")
    assert "reported split" in Selection("val").describe() and "last" in Selection("last", 0.0).describe()
