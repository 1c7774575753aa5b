"""Paper recipes carry the paper's budgets and run all arms; debug=limit dry-runs the exact recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rspnet.composition import compose

REPO = Path(__file__).resolve().parents[1]


def _compose(*overrides: str):
    return compose(*overrides, hydra=True)


def test_rsp_ablation_cfg_job_shows_the_paper_budgets(rspnet_cli) -> None:
    proc = rspnet_cli("experiment=rsp_ablation", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    for line in (
        "cell_search_epochs: 300",
        "macro_search_epochs: 40",
        "train_epochs: 484",
        "cell_search_batch_size: 3",
        "macro_search_batch_size: 3",
        "train_batch_size: 3",
        "cell_search_warmup_epochs: 20",
        "devices: 2",
        "name: paper",
    ):
        assert line in proc.stdout, line


@pytest.mark.parametrize("recipe", ["rsp_ablation", "ocr_ablation"])
def test_ablations_are_multirun_without_dash_m(recipe: str) -> None:
    assert str(_compose(f"experiment={recipe}").hydra.mode) == "RunMode.MULTIRUN"


def test_train_recipes_carry_a_full_schedule() -> None:
    for recipe in ("ocr_ablation", "cityscapes_finetune"):
        cfg = _compose(f"experiment={recipe}")
        assert cfg.trainer.max_epochs == 484 and cfg.dataset.batch_size * cfg.trainer.devices == 6


@pytest.mark.parametrize(
    "order", [("experiment=rsp_ablation", "debug=limit"), ("debug=limit", "experiment=rsp_ablation")]
)
def test_debug_limit_is_applied_after_the_experiment(order: tuple[str, str]) -> None:
    cfg = _compose(*order)
    assert cfg.model.name == "tiny" and cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1
    assert (
        cfg.stage.cell_search_epochs == 1 and cfg.stage.train_batch_size == 2 and cfg.trainer.limit_train_batches == 2
    )
    assert cfg.logger._target_ is None  # logger=none
    # everything else is the recipe's: stages, sweep, dataset, optimisers
    assert (
        cfg.stage.name == "pipeline"
        and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
        and dict(cfg.hydra.sweeper.params) == {"rsp": "off,on"}
    )
    assert cfg.dataset.name == "cityscapes" and cfg.search.weight_momentum == 0.95


def test_pipeline_sets_batch_size_and_warmup_per_sub_stage(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.pipeline import _stage_cfg

    cfg = make_cfg("experiment=rsp_ablation", "stage.macro_search_batch_size=5")
    cell, macro, train = (_stage_cfg(cfg, name, tmp_path) for name in ("cell_search", "macro_search", "train"))
    assert (cell.dataset.batch_size, macro.dataset.batch_size, train.dataset.batch_size) == (3, 5, 3)
    assert (cell.trainer.max_epochs, macro.trainer.max_epochs, train.trainer.max_epochs) == (300, 40, 484)
    assert (cell.search.warmup_epochs, macro.search.warmup_epochs) == (20, 3)


@pytest.mark.slow
def test_debug_limit_runs_both_arms_of_the_real_rsp_ablation_recipe(rspnet_cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = rspnet_cli(
        "experiment=rsp_ablation",
        "debug=limit",
        "dataset=synthetic",
        "dataset.num_train=8",
        "dataset.num_val=4",
        f"paths.output_dir={sweep}",
    )  # no -m: the recipe is MULTIRUN
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = json.loads((sweep / "summary.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    for num, rsp in ((0, False), (1, True)):
        record = json.loads((sweep / str(num) / "pipeline.json").read_text())
        assert record["epochs"] == {"cell_search": 1, "macro_search": 1, "train": 1}
        assert record["batch_size"] == {"cell_search": 2, "macro_search": 2, "train": 2}
        assert json.loads((sweep / str(num) / "cell_search" / "genotype.json").read_text())["rsp"] is rsp
        assert (sweep / str(num) / "eval" / "metrics.json").is_file()
