"""train.init_skip=classifiers: fine-tune a 19-class checkpoint on 11 classes (FCN and OCR heads)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, ConfigError
from rspnet.stages.train import run as run_train
from tests.data.conftest import write_camvid

# 16x32 fixture images: whole images as crops; train.select=val (too few images to hold one out)
CAMVID = ["dataset=camvid", "dataset.crop_size=[16,32]", "dataset.batch_size=2", "dataset.val_batch_size=1"]
CAMVID += ["dataset.num_workers=0", "train.select=val"]


@pytest.fixture(scope="module")
def camvid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SegNet layout, 11 classes: two train pairs and one val pair (shared by the module's tests)."""
    return write_camvid(tmp_path_factory.mktemp("camvid"))


@pytest.fixture(scope="module")
def ocr19(tmp_path_factory: pytest.TempPathFactory, genotype_file: Path) -> Path:
    """A 19-class OCR-head checkpoint from one tiny epoch of stage=train on synthetic data."""
    from tests.conftest import compose_cfg

    out = tmp_path_factory.mktemp("ocr19")
    return Path(run_train(compose_cfg(out, "stage=train", "head=ocr", f"genotype={genotype_file}"))["last_ckpt"])


def _module(cfg, num_classes: int):
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.stages.train import training_architecture

    genotype, macro = training_architecture(cfg)
    return build_seg_module(cfg, genotype, macro, num_classes)


@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_init_skip_copies_the_backbone_and_keeps_fresh_classifiers(head, trained, ocr19, tiny_cfg) -> None:
    from rspnet.stages.train import init_from_checkpoint
    from rspnet.utils.checkpoint import class_layers, net_state, read_checkpoint

    ckpt = trained["last_ckpt"] if head == "fcn" else str(ocr19)
    module = _module(tiny_cfg("stage=train", f"head={head}"), 11)
    layers = class_layers(module.net)
    assert layers == (["head.classifier"] if head == "fcn" else ["head.classifier", "head.aux_head.1"])
    fresh = {k: v.clone() for k, v in module.net.state_dict().items()}
    init_from_checkpoint(module, ckpt, "classifiers")
    saved = net_state(read_checkpoint(ckpt))
    skipped = {k for k in fresh if any(k.startswith(f"{layer}.") for layer in layers)}
    assert len(skipped) == 2 * len(layers)  # weight and bias of each classifier
    for key, value in module.net.state_dict().items():
        if key in skipped:  # this network's own initialisation, 11 output channels
            assert value.shape[0] == 11 and saved[key].shape[0] == 19 and torch.equal(value, fresh[key]), key
        else:  # everything else copied exactly
            assert torch.equal(value, saved[key]), key


def test_a_class_count_mismatch_without_the_option_names_it(trained, tiny_cfg) -> None:
    from rspnet.stages.train import init_from_checkpoint

    module = _module(tiny_cfg("stage=train"), 11)
    with pytest.raises(
        ArtifactError,
        match=r"train.init_ckpt=.* predicts 19 classes but this dataset has 11; pass train.init_skip=classifiers "
        r".*\(head.classifier\)",
    ):
        init_from_checkpoint(module, trained["last_ckpt"])


def test_init_skip_still_refuses_a_backbone_that_does_not_fit(trained, tiny_cfg) -> None:
    cfg = tiny_cfg("stage=train", "model.base_width=16", f"train.init_ckpt={trained['last_ckpt']}")
    cfg.train.init_skip = "classifiers"
    with pytest.raises(ArtifactError, match=r"shape mismatch: .*stem\.layers\.0\.weight \[8, 3, 3, 3\] vs \[16"):
        run_train(cfg)


def test_init_skip_needs_init_ckpt_and_is_validated(tiny_cfg) -> None:
    from rspnet.utils.validate import validate_config

    with pytest.raises(ConfigError, match=r"train.init_skip=classifiers needs train.init_ckpt=PATH"):
        run_train(tiny_cfg("stage=train", "train.init_skip=classifiers"))
    with pytest.raises(ConfigError, match=r"train.init_skip.*classifiers"):
        validate_config(tiny_cfg("stage=train", "train.init_skip=head"))


def test_eval_suggests_the_finetune_that_works(ocr19, camvid_root, tiny_cfg, caplog, tmp_path) -> None:
    """stage=eval of a 19-class checkpoint on 11-class CamVid names the fine-tuning command; that command runs."""
    from rspnet.stages.eval import run as run_eval
    from rspnet.utils.checkpoint import net_state, read_checkpoint

    data = [*CAMVID, f"dataset.root={camvid_root}"]
    with pytest.raises(ConfigError, match="predicts 19 classes but dataset=camvid has 11") as err:
        run_eval(tiny_cfg("stage=eval", f"ckpt={ocr19}", "split=val", *data, out=tmp_path / "eval"))
    suggested = str(err.value).split("fine-tune it on this one first: ")[1].split()
    assert suggested == ["stage=train", f"train.init_ckpt={ocr19}", "train.init_skip=classifiers"]
    caplog.set_level(logging.INFO, logger="rspnet.stages.train")
    # lr=0: the trained weights are the initial ones, so the checkpoint shows what was copied
    result = run_train(tiny_cfg(*suggested, "head=ocr", "train.lr=0.0", *data, out=tmp_path / "ft"))
    lines = [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()]
    assert len(lines) == 1 and "head.classifier, head.aux_head.1" in lines[0] and "19 -> 11 classes" in lines[0]
    info = json.loads((tmp_path / "ft" / "train.json").read_text())
    assert info["init_ckpt"] == str(ocr19) and info["init_skip"] == "classifiers"
    before, after = net_state(read_checkpoint(ocr19)), net_state(read_checkpoint(result["last_ckpt"]))
    assert after["head.classifier.weight"].shape[0] == after["head.aux_head.1.weight"].shape[0] == 11
    same = [k for k in before if "classifier" not in k and "aux_head.1." not in k and "num_batches" not in k]
    assert len(same) > 20 and all(torch.equal(before[k], after[k]) for k in same if "running_" not in k)
