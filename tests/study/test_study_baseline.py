"""The study's library baseline: the MONAI net is injected into SegModule and its checkpoint names that net."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rspnet.lit.seg_module import SegModule
from rspnet.utils.checkpoint import read_checkpoint

TINY = (
    "dataset=synthetic",
    "trainer=cpu",
    "dataset.num_train=2",
    "dataset.num_val=2",
    "dataset.image_size=[32,32]",
    "dataset.crop_size=[32,32]",
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
    "dataset.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "train.select=last",
)


def test_the_baseline_checkpoint_describes_the_monai_net(tmp_path: Path) -> None:
    from experiments.study_baseline import NETWORK, run

    torch.set_num_threads(1)
    run([*TINY, f"paths.output_dir={tmp_path}"])
    assert json.loads((tmp_path / "metrics.json").read_text())["network"] == NETWORK
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    meta = ckpt["rspnet"]
    assert meta["net"]["class"] == "monai.networks.nets.basic_unet.BasicUNet" and meta["net"]["name"] == "monai_unet"
    # the net group entry is stored, so eval/predict/export rebuild the baseline from its checkpoint
    assert meta["net"]["builder"] == "hydra.utils.instantiate"
    module, _ = SegModule.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert type(module.net).__name__ == "BasicUNet"
    # the count of the weights the checkpoint holds, not of an rspnet net that never trained
    assert meta["params"] == sum(v.numel() for k, v in ckpt["state_dict"].items() if k.startswith("net.")) > 0
    assert meta["genotype"] is None and meta["arch_provenance"] == {"genotype": None, "macro": None}
