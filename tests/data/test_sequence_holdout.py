"""train.holdout_sequences: the selection slice is whole video sequences of train; dataset=camvid_full."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rspnet.data import build_datamodule, build_dataset
from rspnet.errors import ConfigError

# CamVid-like frame names: <sequence>_<frame>.png (as in the SegNet copy)
TRAIN = {
    "0001TP": ["0001TP_006690.png", "0001TP_006720.png"],
    "0006R0": ["0006R0_f02400.png", "0006R0_f02430.png", "0006R0_f02460.png"],
    "0016E5": ["0016E5_00390.png", "0016E5_00420.png"],
}
H, W = 36, 48  # a 480x360 frame scaled by 1/10


def write_camvid_sequences(root: Path) -> Path:
    """SegNet layout with sequence-named train frames (three sequences) and one val frame."""
    rng = np.random.default_rng(0)
    files = [("train", n) for names in TRAIN.values() for n in names] + [("val", "0016E5_07959.png")]
    for split, name in files:
        for folder, array in (
            (split, rng.integers(0, 256, (H, W, 3), dtype=np.uint8)),
            (f"{split}annot", rng.integers(0, 12, (H, W), dtype=np.uint8)),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / name)
    return root


@pytest.fixture
def seq_root(tmp_path: Path) -> Path:
    return write_camvid_sequences(tmp_path / "camvid_full")


def _dm(make_cfg, root: Path, *overrides: str):
    cfg = make_cfg("dataset=camvid_full", f"dataset.root={root}", "dataset.num_workers=0", *overrides)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm


def _names(dm, indices) -> set[str]:
    return {dm.train_dataset.items[i][0].name for i in indices}


def test_a_held_out_sequence_is_exactly_its_frames_and_none_reaches_training(make_cfg, seq_root: Path) -> None:
    dm = _dm(make_cfg, seq_root, "train.holdout_sequences=[0006R0]")
    state = dm.holdout_state()
    assert _names(dm, state["holdout"]) == set(TRAIN["0006R0"]) and state["sequences"] == ["0006R0"]
    assert _names(dm, state["fit"]) == set(TRAIN["0001TP"] + TRAIN["0016E5"])
    # training, the searches' weight/arch halves and the class statistics use the rest only
    trained = list(dm.train_dataloader().dataset.indices)
    split = dm.split_state()
    assert _names(dm, trained) == _names(dm, split["weight"] + split["arch"]) == _names(dm, dm.fit_indices())
    assert not _names(dm, trained) & set(TRAIN["0006R0"])
    # validation (select/*) is the held-out sequence, through the eval pipeline (full frames)
    val = dm.val_dataloader()
    val = val[0] if isinstance(val, list) else val
    assert _names(dm, val.dataset.indices) == set(TRAIN["0006R0"]) and val.dataset[0][1].shape == (H, W)
    # the slice does not depend on the seeds (the same sequence for every training seed)
    again = _dm(make_cfg, seq_root, "train.holdout_sequences=[0006R0]", "seed=3", "train.holdout_seed=5")
    assert again.holdout_state()["holdout"] == state["holdout"]


def test_several_sequences_and_what_train_json_says(make_cfg, seq_root: Path) -> None:
    from rspnet.stages.train import selection_info

    dm = _dm(make_cfg, seq_root, "train.holdout_sequences=[0001TP,0016E5]")
    assert _names(dm, dm.holdout_state()["holdout"]) == set(TRAIN["0001TP"] + TRAIN["0016E5"])
    info = selection_info(dm)
    assert info["holdout"]["sequences"] == ["0001TP", "0016E5"] and info["holdout"]["images"] == 4
    assert info["selected_on"] == "held-out sequences 0001TP, 0016E5 of train (4 images)"
    # a checkpoint's slice survives a resume with other options
    other = _dm(make_cfg, seq_root, "train.holdout_sequences=[0006R0]")
    other.load_state_dict(dm.state_dict())
    assert other.holdout_state() == dm.holdout_state() and selection_info(other) == info


def test_select_last_monitors_the_sequence_and_select_val_ignores_it(make_cfg, seq_root: Path) -> None:
    last = _dm(make_cfg, seq_root, "train.select=last", "train.holdout_sequences=[0006R0]")
    assert _names(last, last.holdout_state()["holdout"]) == set(TRAIN["0006R0"])
    val = _dm(make_cfg, seq_root, "train.select=val", "train.holdout_sequences=[0006R0]")
    assert val.holdout_state() is None and len(val.fit_indices()) == 7


@pytest.mark.parametrize(
    ("sequences", "message"),
    [
        (
            "[0007XX]",
            r"train.holdout_sequences=\[0007XX\]: 0007XX is not a sequence of dataset=camvid's train split; "
            r"its sequences: 0001TP, 0006R0, 0016E5$",
        ),
        ("[0001TP,0006R0,0016E5]", r"holds out every sequence of train \(0001TP, 0006R0, 0016E5\); leave one"),
    ],
)
def test_a_bad_sequence_is_one_line_naming_the_option(make_cfg, seq_root: Path, sequences: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _dm(make_cfg, seq_root, f"train.holdout_sequences={sequences}")
    assert "\n" not in str(err.value)


def test_a_dataset_without_sequences_is_one_line(make_cfg, camvid_root: Path) -> None:
    for overrides in (("dataset=synthetic",), ("dataset=camvid", f"dataset.root={camvid_root}")):
        dm = build_datamodule(make_cfg(*overrides, "train.holdout_sequences=[0006R0]"))
        with pytest.raises(ConfigError, match=r"^train.holdout_sequences=\[0006R0\]: dataset=\w+ has no sequence") as e:
            dm.setup("fit")
        assert "\n" not in str(e.value)


def test_camvid_full_composes_and_reads_full_frames(make_cfg, seq_root: Path) -> None:
    cfg = make_cfg("dataset=camvid_full")
    assert cfg.dataset.name == "camvid" and cfg.dataset.root.endswith("camvid_full")
    assert list(cfg.dataset.crop_size) == [360, 480] and cfg.dataset.num_classes == 11
    # the CamVid recipe takes the dataset's crops and batches: camvid_full's, not the 320x240 copy's
    recipe = make_cfg("experiment=camvid", "dataset=camvid_full")
    assert list(recipe.dataset.crop_size) == [360, 480] and recipe.dataset.root.endswith("camvid_full")
    assert list(make_cfg("experiment=camvid").dataset.crop_size) == [240, 320]
    small = make_cfg(
        "dataset=camvid_full", f"dataset.root={seq_root}", "dataset.crop_size=[18,24]", "dataset.eval_scale=0.5"
    )
    image, mask = build_dataset(small, "train", train=True)[0]
    assert image.shape == (3, 18, 24) and mask.shape == (18, 24)  # a random-scale crop of the full frame
    image, mask = build_dataset(small, "val", train=False)[0]
    assert image.shape == (3, 18, 24) and mask.shape == (H, W)  # inferred at half scale, scored at full
