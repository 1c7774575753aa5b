"""Experiment recipes compose, line up in W&B, and the CamVid recipe runs on a tiny fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.conftest import write_image, write_label

REPO = Path(__file__).resolve().parents[1]
RECIPES = (
    "rsp_ablation",
    "ocr_ablation",
    "mapillary_pretrain",
    "cityscapes_finetune",
    "camvid",
    "camvid_full",
    "camvid_study",
)


def test_paper_recipes_exist() -> None:
    assert all((REPO / "conf" / "experiment" / f"{name}.yaml").is_file() for name in RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_with_group_and_tags(make_cfg, name: str) -> None:
    cfg = make_cfg(f"experiment={name}", "logger=wandb")
    assert cfg.logger.group  # one W&B group per ablation
    tags = list(cfg.logger.tags)
    assert f"rsp-{cfg.rsp.enabled}" in tags and f"head-{cfg.head.name}" in tags and f"data-{cfg.dataset.name}" in tags


def test_ablation_arms_differ_only_in_the_ablated_switch(make_cfg) -> None:
    on, off = (make_cfg("experiment=rsp_ablation", f"rsp={v}") for v in ("on", "off"))
    assert on.logger.group == off.logger.group and on.rsp.enabled and not off.rsp.enabled
    assert on.model == off.model and on.dataset == off.dataset and on.head == off.head
    fcn, ocr = (make_cfg("experiment=ocr_ablation", f"head={v}") for v in ("fcn", "ocr"))
    assert fcn.logger.group == ocr.logger.group and fcn.genotype == ocr.genotype and fcn.rsp == ocr.rsp


def test_recipe_sweeps(make_cfg) -> None:
    from rspnet.composition import compose

    rsp = compose("experiment=rsp_ablation", hydra=True)
    ocr = compose("experiment=ocr_ablation", hydra=True)
    assert dict(rsp.hydra.sweeper.params) == {"rsp": "off,on"}
    assert dict(ocr.hydra.sweeper.params) == {"head": "fcn,ocr", "rsp": "off,on"}


def test_camvid_recipe_runs_end_to_end_on_a_fixture(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.pipeline import run as run_pipeline

    root = tmp_path / "camvid"  # SegNet layout, 16x32 images, pixel 11 = void
    # 6 train images: 1 held out for selection, 5 split into the search's weight/arch halves
    for split, names in (("train", "abcdef"), ("val", "gh")):
        for i, name in enumerate(names):
            write_image(root / split / f"{name}.png", seed=i)
            write_label(root / f"{split}annot" / f"{name}.png", [(8, i % 11), (4, 3), (4, 11)])
    out = tmp_path / "run"
    cfg = make_cfg(
        "experiment=camvid",
        f"dataset.root={root}",
        "dataset.crop_size=[16,32]",
        "dataset.batch_size=2",
        "dataset.val_batch_size=2",
        "dataset.num_workers=0",
        "stage.cell_search_epochs=1",
        "stage.macro_search_epochs=1",
        "stage.train_epochs=1",
        out=out,
    )
    result = run_pipeline(cfg)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["dataset"] == "camvid" and len(metrics["iou_per_class"]) == 11
    assert result["miou"] == pytest.approx(metrics["miou"])


def test_camvid_full_is_the_camvid_recipe_at_480x360_with_the_protocols_choices(make_cfg) -> None:
    """experiment=camvid_full = experiment=camvid + phase B's overrides (experiments/README.md "CamVid at 480x360")."""
    from omegaconf import OmegaConf

    full = make_cfg("experiment=camvid_full")
    scale_range, eval_scale = list(full.dataset.scale_range), full.dataset.eval_scale
    assert len(scale_range) == 2 and 0 < scale_range[0] < scale_range[1] and eval_scale in (0.75, 1.0)  # phase A's grid
    protocol = make_cfg(
        "experiment=camvid",
        "dataset=camvid_full",
        "train.holdout_sequences=[0006R0]",
        f"dataset.scale_range=[{scale_range[0]},{scale_range[1]}]",
        f"dataset.eval_scale={eval_scale}",
        "dataset.crop_size=[240,320]",
        "stage.train_epochs=120",
        "train.monitor_val=false",
        "search.target_gmacs=0.1",  # phase C: the searched net bounded so the pipeline holds its hour
    )
    for group in ("stage", "dataset", "train", "search", "model", "net", "head", "rsp", "trainer"):
        assert OmegaConf.to_container(full[group]) == OmegaConf.to_container(protocol[group]), group
    assert full.logger.group == "camvid_full" and full.dataset.root.endswith("camvid_full")
    enet = make_cfg("experiment=camvid_full", "net=enet")  # the same-recipe ENet: the same training stage
    assert OmegaConf.to_container(enet.train) == OmegaConf.to_container(full.train) and enet.net.name == "enet"
    from rspnet.models.cost import CellTarget

    target = CellTarget.from_cfg(make_cfg("experiment=camvid_full", "stage=cell_search"))  # reachable: no error
    assert target is not None and target.target.metric == "gmacs"
