"""SegDataModule: loaders, augmentation pipeline, search split; synthetic scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rspnet.data import build_datamodule, build_dataset
from rspnet.data.synthetic import render
from rspnet.data.transforms import MEAN, STD
from rspnet.errors import ConfigError, DataError

SMALL = ("dataset.image_size=[32,64]", "dataset.crop_size=[32,64]", "dataset.num_train=10", "dataset.num_val=3")


def test_loaders_yield_normalised_batches(make_cfg) -> None:
    # train.select=val: validation during fit runs on val itself (the held-out slice is tested below)
    dm = build_datamodule(make_cfg(*SMALL, "dataset.batch_size=4", "dataset.val_batch_size=2", "train.select=val"))
    assert dm.num_classes == 19 and dm.ignore_index == 255 and len(dm.palette) == 19 and dm.classes[0] == "road"
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 64) and x.dtype == torch.float32 and y.shape == (4, 32, 64) and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 2  # 10 images, batch 4, drop_last
    assert len(dm.val_dataloader()) == 2 and not dm.val_dataloader().drop_last  # 3 images, batch 2
    xv, yv = next(iter(dm.val_dataloader()))
    # val is the generated scene, only normalised
    img, mask = dm.val_dataset.load_image(0), dm.val_dataset.load_label(0)
    expected = (img[0, 0, 0] / 255.0 - MEAN[0]) / STD[0]
    assert xv[0, 0, 0, 0].item() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(yv[0], torch.from_numpy(mask.astype(np.int64)))


def test_drop_last_only_when_dataset_holds_a_batch(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "dataset.num_train=3", "dataset.batch_size=4", "train.select=val"))
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert not loader.drop_last and len(loader) == 1


def test_workers_pin_memory_and_persistent_workers(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "dataset.num_workers=2", "dataset.pin_memory=true", "train.select=val"))
    dm.setup()
    loader = dm.val_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers and loader.pin_memory
    assert not build_datamodule(make_cfg(*SMALL, "train.select=val")).val_dataloader().persistent_workers


def test_train_pipeline_pads_mask_with_ignore_and_crops(make_cfg) -> None:
    cfg = make_cfg(*SMALL, "dataset.scale_range=[0.5,0.5]", "dataset.crop_size=[40,80]", "dataset.color_jitter=null")
    ds = build_dataset(cfg, "train", train=True)
    image, mask = ds[0]
    assert image.shape == (3, 40, 80) and mask.shape == (40, 80)
    # the 16x32 scaled scene sits in the centre; the padding is ignore
    assert mask[:12].eq(255).all() and mask[:, :24].eq(255).all() and mask[12:28, 24:56].ne(255).any()


def test_augmentation_follows_torch_seed(make_cfg) -> None:
    ds = build_dataset(make_cfg(*SMALL), "train", train=True)
    torch.manual_seed(3)
    a = ds[1]
    torch.manual_seed(3)
    b = ds[1]
    c = ds[1]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_search_split_is_disjoint_deterministic_and_restorable(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "dataset.batch_size=2", "seed=1"))
    dm.setup("fit")
    weight, arch = dm.search_dataloaders()
    state = dm.split_state()
    # the halves split the training images: train minus the held-out slice (1 of 10 by default)
    assert len(state["holdout"]) == 1 and sorted(state["weight"] + state["arch"] + state["holdout"]) == list(range(10))
    assert len(state["arch"]) == 4  # round(9 * 0.5)
    assert list(weight.dataset.indices) == state["weight"] and list(arch.dataset.indices) == state["arch"]
    assert weight.drop_last and len(next(iter(arch))[0]) == 2
    again = build_datamodule(make_cfg(*SMALL, "seed=1"))
    again.setup("fit")
    assert again.split_state() == state
    other = build_datamodule(make_cfg(*SMALL, "seed=2"))
    other.setup("fit")
    assert other.split_state()["arch"] != state["arch"]


def test_the_search_split_is_saved_by_the_datamodule_and_checked_on_resume(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "seed=1"))
    dm.setup("fit")
    assert "search_split" not in dm.state_dict()  # training checkpoints keep their format: the held-out slice only
    dm.use_search_loaders("max_size_cycle")
    saved = dm.state_dict()
    assert saved["search_split"] == dm.split_state() and saved["holdout"] == dm.holdout_state()
    assert set(dm.train_dataloader().iterables) == {"weight", "arch"}  # the CombinedLoader the search fits on
    again = build_datamodule(make_cfg(*SMALL, "seed=1"))
    again.setup("fit")
    again.use_search_loaders("max_size_cycle")
    again.load_state_dict(saved)  # same seed and arch_split: the same split, accepted
    for change in ("seed=2", "search.arch_split=0.25"):
        other = build_datamodule(make_cfg(*SMALL, change))
        other.setup("fit")
        other.use_search_loaders("max_size_cycle")
        with pytest.raises(ConfigError, match="different weight/arch data split"):
            other.load_state_dict(saved)
    with pytest.raises(DataError, match="99 train images"):
        other.load_state_dict({"holdout": dict(saved["holdout"], num_train=99)})


def test_search_split_options_are_checked(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "search.arch_split=1.0"))
    with pytest.raises(ConfigError, match="search.arch_split=1.0"):
        dm.search_dataloaders()
    dm = build_datamodule(make_cfg(*SMALL, "dataset.num_train=1", "train.select=last", "train.holdout_fraction=0"))
    with pytest.raises(DataError, match="needs >= 2"):
        dm.search_dataloaders()


def test_config_checks(make_cfg) -> None:
    with pytest.raises(ConfigError, match="dataset.num_classes=11 but dataset=synthetic has 19"):
        build_datamodule(make_cfg("dataset.num_classes=11"))
    with pytest.raises(ConfigError, match="dataset.name=kitti is unknown"):
        build_datamodule(make_cfg("dataset.name=kitti"))
    with pytest.raises(ConfigError, match="dataset.batch_size=0"):
        build_datamodule(make_cfg("dataset.batch_size=0"))
    with pytest.raises(ConfigError, match=r"dataset.color_jitter=\[0.1\] must be"):
        build_dataset(make_cfg("dataset.color_jitter=[0.1]"), "train", True)
    with pytest.raises(ConfigError, match=r"dataset.scale_range=\[2.0, 1.0\]"):
        build_dataset(make_cfg("dataset.scale_range=[2.0,1.0]"), "train", True)
    with pytest.raises(ConfigError, match="dataset.num_train=0"):
        build_dataset(make_cfg("dataset.num_train=0"), "train", True)


def test_test_loader_uses_cfg_split(make_cfg) -> None:
    dm = build_datamodule(make_cfg(*SMALL, "split=test"))
    dm.setup("test")
    assert dm.train_dataset is None and len(dm.test_dataloader().dataset) == 3


def test_synthetic_is_deterministic_per_seed_and_covers_all_classes() -> None:
    a_img, a_lab = render(0, "train", 5, (64, 128))
    b_img, b_lab = render(0, "train", 5, (64, 128))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(render(1, "train", 5, (64, 128))[1], a_lab)
    assert not np.array_equal(render(0, "val", 5, (64, 128))[1], a_lab)
    seen = np.zeros(256, dtype=bool)
    for i in range(48):
        seen[np.unique(render(0, "train", i, (64, 128))[1])] = True
    assert seen[:19].all() and not seen[19:255].any()


def test_synthetic_is_learnable_by_a_tiny_net(make_cfg) -> None:
    """A 2-layer pixel classifier beats chance (1/19 mIoU) by far after 30 steps."""
    from rspnet.metrics import SegMetric

    torch.manual_seed(0)
    dm = build_datamodule(make_cfg(*SMALL, "dataset.num_train=16", "dataset.num_val=8", "dataset.batch_size=8"))
    dm.setup()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 19, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(15):
        for x, y in dm.train_dataloader():
            loss = torch.nn.functional.cross_entropy(net(x), y, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
    metric = SegMetric(19)
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            metric.update(net(x), y)
    assert metric.compute()["miou"] > 0.2  # chance is about 1/19; this run gets about 0.31


def test_resize_long_resizes_the_eval_image_but_never_the_label(make_cfg) -> None:
    ds = build_dataset(make_cfg(*SMALL, "dataset.resize_long=32"), "val", train=False)
    image, mask = ds[0]
    # the network sees the resized image; scoring sees the label file itself (SPEC §6)
    assert image.shape == (3, 16, 32) and mask.shape == (32, 64)
    assert torch.equal(mask, torch.from_numpy(ds.load_label(0).astype(np.int64)))


def test_eval_scale_scales_eval_images_only(make_cfg) -> None:
    cfg = make_cfg(*SMALL, "dataset.eval_scale=0.5")
    image, mask = build_dataset(cfg, "val", train=False)[0]
    assert image.shape == (3, 16, 32) and mask.shape == (32, 64)  # the label keeps the file's size
    image, mask = build_dataset(cfg, "train", train=True)[0]
    assert image.shape[-2:] == mask.shape == tuple(cfg.dataset.crop_size)  # training crops are untouched


def test_an_eval_batch_of_mixed_label_sizes_is_one_line_naming_val_batch_size() -> None:
    from rspnet.data.datamodule import eval_collate

    same = [(torch.zeros(3, 8, 16), torch.zeros(16, 32, dtype=torch.long))] * 2
    x, y = eval_collate(same)
    assert x.shape == (2, 3, 8, 16) and y.shape == (2, 16, 32)
    mixed = [same[0], (torch.zeros(3, 8, 16), torch.zeros(24, 48, dtype=torch.long))]
    with pytest.raises(DataError, match=r"different sizes .*; set dataset.val_batch_size=1$"):
        eval_collate(mixed)
