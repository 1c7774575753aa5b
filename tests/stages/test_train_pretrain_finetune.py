"""experiment=mapillary_pretrain then experiment=cityscapes_finetune on tiny on-disk fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError
from rspnet.utils.checkpoint import read_checkpoint
from tests.data.conftest import MAPILLARY_LABELS, W, _colour, write_image, write_label

# train.select=val: the fixtures have two train images, too few to hold one out and still train on a batch of 2
TINY = [
    "model=tiny",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "dataset.crop_size=[16,32]",
    "dataset.batch_size=2",
    "dataset.val_batch_size=1",
    "dataset.num_workers=0",
    "dataset.pin_memory=false",
    "dataset.resize_long=null",
    "genotype=paper_like",
    "macro_arch=default_macro",  # the recipes require an architecture
    "train.select=val",
]


def _mapillary(root: Path) -> Path:
    """Mapillary v1.2 layout: two training images and one validation image with P-mode labels."""
    names = MAPILLARY_LABELS["v1.2"]
    labels = [{"name": n, "readable": n, "color": list(_colour(i)), "instances": False} for i, n in enumerate(names)]
    root.mkdir(parents=True)
    (root / "config_v1.2.json").write_text(json.dumps({"labels": labels, "version": "v1.2"}))
    for folder, seed in (("training", 1), ("training", 2), ("validation", 3)):
        write_image(root / folder / "images" / f"img{seed}.jpg", seed)
        write_label(
            root / folder / "v1.2" / "labels" / f"img{seed}.png",
            [(8, 1), (8, 7)],
            [_colour(i) for i in range(len(names))],
        )
    return root


def _cityscapes(root: Path) -> Path:
    """Cityscapes gtFine layout: two train images and one val image (road / sky labelIds)."""
    for split, city, seq in (("train", "aachen", 0), ("train", "aachen", 1), ("val", "frankfurt", 0)):
        stem = f"{city}_{seq:06d}_000019"
        write_image(root / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", seq + len(split))
        write_label(root / f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", [(8, 7), (8, 23)])
    return root


def _net_params(ckpt: Path) -> dict[str, torch.Tensor]:
    """Trainable weights of the derived net in a stage=train checkpoint (BN buffers excluded)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.") and "running_" not in k and "num_batches" not in k}


def test_mapillary_pretrain_then_cityscapes_finetune(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.train import run as run_train

    assert W == 32  # the fixtures' image width matches the crop below
    pre_out, ft_out = tmp_path / "pretrain", tmp_path / "finetune"
    pre = run_train(
        make_cfg(
            "experiment=mapillary_pretrain", *TINY, f"dataset.root={_mapillary(tmp_path / 'mapillary')}", out=pre_out
        )
    )
    ckpt = Path(pre["last_ckpt"])
    assert ckpt.is_file()
    # lr=0: the fine-tuned weights must be exactly the Mapillary ones, which proves they were loaded
    ft = run_train(
        make_cfg(
            "experiment=cityscapes_finetune",
            *TINY,
            f"ckpt={ckpt}",
            "train.lr=0.0",
            f"dataset.root={_cityscapes(tmp_path / 'cityscapes')}",
            out=ft_out,
        )
    )
    assert json.loads((ft_out / "train.json").read_text())["init_ckpt"] == str(ckpt)
    before, after = _net_params(ckpt), _net_params(Path(ft["last_ckpt"]))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_finetune_recipe_requires_ckpt_and_lines_up_with_pretraining(make_cfg) -> None:
    ft = make_cfg("experiment=cityscapes_finetune")
    pre = make_cfg("experiment=mapillary_pretrain")
    with pytest.raises(ArtifactError, match="checkpoint not found: REQUIRED: pass ckpt=PATH"):
        read_checkpoint(ft.train.init_ckpt)  # what stage=train does first with train.init_ckpt
    assert ft.dataset.name == "cityscapes" and pre.dataset.name == "mapillary"
    assert ft.dataset.num_classes == pre.dataset.num_classes == 19
    assert ft.logger.group == pre.logger.group  # side by side in W&B
    assert "finetune" in ft.logger.tags and "pretrain" in pre.logger.tags
    assert make_cfg("experiment=cityscapes_finetune", "ckpt=/x/last.ckpt").train.init_ckpt == "/x/last.ckpt"
