"""stage=train's architecture inputs: the default_macro warning, macro.json vs model.*, recipe sentinels, provenance."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rspnet.architecture import PAPER_GENOTYPE, cfg_provenance
from rspnet.errors import ConfigError
from rspnet.models.derived import default_macro
from rspnet.stages.train import training_architecture
from tests.conftest import compose_cfg


def test_train_without_macro_arch_warns_once_and_labels_it_preset(tiny_cfg, caplog) -> None:
    cfg = tiny_cfg("stage=train")
    with caplog.at_level(logging.WARNING, logger="rspnet"):
        _, macro = training_architecture(cfg)
    assert macro.search["source"] == "default_macro"
    named = [r for r in caplog.records if "default_macro" in r.getMessage()]
    assert len(named) == 1 and named[0].levelno == logging.WARNING and "provenance: preset" in named[0].getMessage()
    assert cfg_provenance(cfg)["macro"] == "preset"


def test_train_json_records_the_architecture_provenance(trained: dict) -> None:
    record = json.loads((trained["out"] / "train.json").read_text())
    # the fixture's genotype has no search record (unknown); no macro_arch= -> default_macro (preset)
    assert record["arch_provenance"] == {"genotype": "unknown", "macro": "preset"}


@pytest.mark.parametrize(
    ("override", "mismatch"), [("model.layers=3", "layers=2"), ("model.scales=[4,8,16]", "scales=[4, 8, 16, 32]")]
)
def test_macro_json_must_match_the_model(tiny_cfg, tmp_path: Path, override: str, mismatch: str) -> None:
    macro = default_macro(tiny_cfg("stage=train")).save(tmp_path / "macro.json")  # model.layers=2, 4 scales
    cfg = tiny_cfg("stage=train", f"macro_arch={macro}", override)
    with pytest.raises(ConfigError) as err:
        training_architecture(cfg)
    msg = str(err.value)
    assert str(macro) in msg and mismatch in msg and override.split("=")[0] in msg and "\n" not in msg


@pytest.mark.parametrize("recipe", ["ocr_ablation", "mapillary_pretrain", "cityscapes_finetune"])
def test_paper_recipes_require_searched_artifacts(tmp_path: Path, recipe: str) -> None:
    cfg = compose_cfg(tmp_path, f"experiment={recipe}", "logger=none")
    with pytest.raises(ConfigError, match="option genotype is required by this recipe: pass"):
        training_architecture(cfg)
    cfg = compose_cfg(tmp_path, f"experiment={recipe}", "logger=none", f"genotype={PAPER_GENOTYPE}")
    with pytest.raises(ConfigError, match="option macro_arch is required by this recipe"):
        training_architecture(cfg)


def test_the_preset_is_chosen_by_name_and_labelled(tmp_path: Path, caplog) -> None:
    cfg = compose_cfg(
        tmp_path, "experiment=ocr_ablation", "logger=none", "genotype=paper_like", "macro_arch=default_macro"
    )
    with caplog.at_level(logging.WARNING, logger="rspnet"):
        genotype, macro = training_architecture(cfg)
    assert genotype.ops == ["conv_3x3", "dw_conv_3x3", "dil_conv_3x3"] and macro.layers == cfg.model.layers
    assert cfg_provenance(cfg) == {"genotype": "preset", "macro": "preset"}
    assert any("not a search result (genotype: preset, macro: preset)" in r.getMessage() for r in caplog.records)


def test_the_logger_records_the_architecture_provenance(tiny_cfg, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from rspnet.stages.train import run as run_train

    out = tmp_path / "csvrun"
    run_train(
        tiny_cfg(
            "stage=train",
            "logger=csv",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "genotype=paper_like",
            "macro_arch=default_macro",
            out=out,
        )
    )
    hparams = OmegaConf.load(out / "csv" / "hparams.yaml")
    assert hparams.arch_provenance == {"genotype": "preset", "macro": "preset"}
