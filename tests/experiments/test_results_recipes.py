"""The CamVid recipe sweep (hparams_search=camvid_recipes: a Hydra multirun, resumable through the runs'
done.json, its table from experiments.results) and camvid_sizing --compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import camvid_sizing
from experiments.results import chosen, main, recipe_rows, recipe_table
from rspnet.composition import compose

REPO = Path(__file__).resolve().parents[2]


def test_recipe_sweep_is_a_multirun_of_losses_and_settings_one_folder_per_variant() -> None:
    cfg = compose("experiment=camvid", "hparams_search=camvid_recipes", hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # folders named by the variant: the CLI test below
    assert dict(cfg.hydra.sweeper.params) == {"loss": "ce,mfb,enet", "train.lr": "0.01,0.05"}
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert {"stage", "ckpt", "ckpt_path", "dataset.root", "paths.output_dir", "genotype", "macro_arch"} <= excluded
    recipe = compose("experiment=camvid").train  # the default loss is the recipe's own: the sweep changes nothing else
    assert OmegaConf.to_container(cfg.train) == OmegaConf.to_container(recipe)
    for loss, weights, weighting, ohem in (
        ("ce", "none", None, False),
        ("mfb", "auto", "median_freq", False),
        ("enet", "auto", "enet", False),
        ("ohem", "none", None, True),
        ("ohem_mfb", "auto", "median_freq", True),
    ):
        train = compose("experiment=camvid", "hparams_search=camvid_recipes", f"loss={loss}").train
        assert (train.class_weights, train.ohem) == (weights, ohem)
        assert weighting is None or train.class_weighting == weighting


def test_the_chosen_variant_follows_the_held_out_column_not_val() -> None:
    rows = [
        {"name": "a", "miou": 0.6, "selection_miou": 0.3},
        {"name": "b", "miou": 0.4, "selection_miou": 0.5},
    ]
    assert chosen(rows) == "b"
    assert chosen([{"name": "x", "miou": 0.5, "selection_miou": None}]) is None
    rows = [r | {"iou_per_class": {"sky": 0.9}, "params": 1e5, "wall_s": 60.0, "cpu_s": 90.0} for r in rows]
    table = recipe_table(rows)
    assert "**b**" in table and "| `b` * | 40.0 | 50.0 | 90.0 | 0.100 | 1.0 | 1.5 |" in table


# the micro grid: two train-only variants on the shipped CamVid architecture, synthetic data (seconds a job)
SWEEP = [
    "experiment=camvid",
    "hparams_search=camvid_recipes",
    "debug=tiny",
    "loss=ce,mfb",
    "train.lr=0.05",
    "stage.train_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "ckpt_path=last",
]
TRAIN = [
    "stage=train",
    "genotype=experiments/genotypes/camvid_tiny_s0.json",
    "macro_arch=experiments/genotypes/camvid_tiny_s0_macro.json",
    "trainer.max_epochs=${stage.train_epochs}",
    "checkpoint.filename=best",
    "hydra.sweep.subdir=${hydra.job.override_dirname}/train",
]
EVAL = [
    "stage=eval",
    "ckpt=${hydra:sweep.dir}/${hydra:job.override_dirname}/train/checkpoints/best.ckpt",
    "hydra.sweep.subdir=${hydra.job.override_dirname}/eval",
]
VARIANTS = [f"loss={loss},stage.train_epochs=1,train.lr=0.05,trainer.limit_train_batches=1,trainer.limit_val_batches=1"
            for loss in ("ce", "mfb")]  # fmt: skip


def test_recipe_sweep_skips_finished_jobs_after_a_kill_and_writes_the_table(rspnet_cli, tmp_path: Path) -> None:
    """The documented train-only sweep (docs/camvid_recipes.md) through the CLI: killed after its first job,
    run again (the finished job is skipped by its done.json, the other runs), evaluated, tabled."""
    sweep = tmp_path / "recipes"
    args = [*SWEEP, f"paths.output_dir={sweep}", *TRAIN]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    first_done = sweep / VARIANTS[0] / "train" / "done.json"
    first = subprocess.Popen(
        [sys.executable, "-m", "rspnet.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # killed as soon as the first job is done
        deadline = time.monotonic() + 300
        while not first_done.is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait()
    marker = first_done.read_bytes()
    proc = rspnet_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert first_done.read_bytes() == marker  # skipped, not run again
    assert "finished before" in (sweep / VARIANTS[0] / "train" / "rspnet.log").read_text()
    assert (sweep / VARIANTS[1] / "train" / "done.json").is_file()
    proc = rspnet_cli(*SWEEP, f"paths.output_dir={sweep}", *EVAL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = recipe_rows(sweep)
    assert [r["name"] for r in rows] == VARIANTS
    assert all(isinstance(r["miou"], float) and isinstance(r["selection_miou"], float) and r["cpu_s"] > 0 for r in rows)
    assert (sweep / VARIANTS[1] / "train" / "class_stats.json").is_file()  # mfb: weights from pixel counts
    table = tmp_path / "recipes.md"
    assert main(["--recipes", str(sweep), "--out", str(table)]) == 0
    assert all(f"`{v}`" in table.read_text() for v in VARIANTS) and "Chosen on the held-out column" in table.read_text()


def test_sizing_compare_prints_one_row_per_variant(capsys) -> None:
    small = [
        "dataset.crop_size=[32,48]",
        "dataset.batch_size=2",
        "dataset.val_batch_size=2",
        "model.search_layers=2",
        "model.layers=2",
        "model.cells_per_node=1",
    ]
    camvid_sizing.main(
        [
            "--compare",
            "tiny:model=tiny",
            "wide:model=cpu_small,model.layers=2,model.cells_per_node=1",
            "--budget-min",
            "5",
            *small,
        ]
    )
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny") or line.startswith("| wide")
    ]
    assert len(rows) == 2
    params = [float(r.split("|")[2]) for r in rows]
    assert params[0] < params[1]  # the wider preset has more parameters
    assert all(int(r.split("|")[-2]) >= 0 for r in rows)


def test_sizing_counts_a_held_out_sequence(make_cfg) -> None:
    assert camvid_sizing.split_sizes(make_cfg("experiment=camvid")) == (330, 37)
    assert camvid_sizing.split_sizes(make_cfg("experiment=camvid", "train.holdout_sequences=[0006R0]")) == (266, 101)


def _stage(folder: Path, stage: str, wall: float, epoch_walls: list[float]) -> None:
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"stage": stage, "wall_s": wall}))
    if epoch_walls:
        rows = [{"epoch": i, "train/loss_epoch": 1.0, "epoch_wall_s": w} for i, w in enumerate(epoch_walls)]
        (folder / "curves.json").write_text(json.dumps({"rows": rows}))


def test_sizing_from_a_measured_run_projects_each_stage_to_the_config_epochs(tmp_path, capsys) -> None:
    run = tmp_path / "short"
    _stage(run / "cell_search", "cell_search", 70.0, [30.0, 20.0, 22.0])
    _stage(run / "macro_search", "macro_search", 50.0, [25.0, 20.0])
    _stage(run / "train", "train", 100.0, [40.0, 10.0, 10.0, 12.0])
    _stage(run / "eval", "eval", 6.0, [])
    rates = {r[0]: r for r in camvid_sizing.measured_rates(run)}
    # the median epoch; the first (start-up) and last (end-of-fit work) epochs' extras become fixed cost
    assert rates["cell_search"][1:] == (3, 22.0, 70.0 - 3 * 22.0)
    assert rates["macro_search"][1:] == (2, 22.5, 5.0)
    assert rates["train"][1:] == (4, 11.0, 56.0) and rates["eval"][1:] == (0, 0.0, 6.0)
    epochs = ["stage.cell_search_epochs=10", "stage.macro_search_epochs=5", "stage.train_epochs=30"]
    camvid_sizing.main(["--measured", str(run), "--budget-min", "10", *epochs])
    out = capsys.readouterr().out
    # cell 4 + 220, macro 5 + 112.5, train 56 + 330, eval 6: 733.5 s = 12.2 min;
    # 600 s - 347.5 (other stages) - 56 (training's fixed cost) = 196.5 s -> 17 epochs of 11 s
    assert "| **all** | | | | | **12.2** |" in out and "fit in 10 min after the other stages: **17**" in out
    legacy = tmp_path / "legacy"
    _stage(legacy / "train", "train", 10.0, [])
    (legacy / "train" / "curves.json").write_text(json.dumps({"rows": [{"epoch": 0, "train/loss_epoch": 1.0}]}))
    with pytest.raises(SystemExit, match="no epoch_wall_s"):
        camvid_sizing.measured_rates(legacy)
    with pytest.raises(SystemExit, match="no done.json"):
        camvid_sizing.measured_rates(tmp_path / "nothing")
