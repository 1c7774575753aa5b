"""experiments.camvid_recipes (variant grid, done markers, table) and camvid_sizing --compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import camvid_recipes, camvid_sizing


def _fake_runner(calls: list[list[str]]):
    """Stands in for the rspnet subprocess: writes the files a finished run leaves."""

    def run(args: list[str], log: Path) -> int:
        calls.append(args)
        out = Path(next(a for a in args if a.startswith("paths.output_dir=")).split("=", 1)[1])
        weighted = "train.class_weights=auto" in args
        train = {
            "params": 123_000,
            "best_val_miou": 0.35 if weighted else 0.3,
            "selected_ckpt": str(out / "train" / "last.ckpt"),
            "selection": {"selected_on": "held-out 0.1 of train (seed 0, 37 images)"},
        }
        metrics = {
            "miou": 0.5 if weighted else 0.4,
            "split": "val",
            "iou_per_class": {"sky": 0.9, "pole": 0.1 if weighted else None},
        }
        if "stage=eval" in args:
            (out).mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text(json.dumps(metrics))
            return 0
        train_dir = out if "stage=train" in args else out / "train"
        train_dir.mkdir(parents=True, exist_ok=True)
        (train_dir / "train.json").write_text(json.dumps(train))
        if "stage=train" not in args:
            (out / "eval").mkdir(parents=True, exist_ok=True)
            (out / "eval" / "metrics.json").write_text(json.dumps(metrics))
        return 0

    return run


def test_grid_runs_each_variant_once_and_writes_the_table(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    argv = ["--root", "data/camvid", "--out", str(tmp_path), "--loss", "ce", "mfb", "--preset", "tiny", "cpu_small"]
    assert camvid_recipes.main(argv, runner=_fake_runner(calls)) == 0
    assert len(calls) == 4 and all(c[0] == "experiment=camvid" and "dataset.root=data/camvid" in c for c in calls)
    assert sorted(p.parent.name for p in tmp_path.glob("*/done.json")) == [
        "ce-base-cpu_small",
        "ce-base-tiny",
        "mfb-base-cpu_small",
        "mfb-base-tiny",
    ]
    table = (tmp_path / "recipes.md").read_text()
    assert "| mfb-base-tiny * | 50.0 | 35.0 | 90.0 | 10.0 | 0.123 |" in table  # best held-out (ties: first)
    assert "Chosen on the held-out column: **mfb-base-tiny**" in table and "Device:" in table
    assert "| ce-base-tiny | 40.0 | 30.0 | 90.0 | – | 0.123 |" in table
    assert "`rspnet experiment=camvid dataset.root=data/camvid train.class_weights=auto" in table
    # resumable: finished variants are skipped, an unfinished folder is cleared and rerun
    (tmp_path / "ce-base-tiny" / "done.json").unlink()
    (tmp_path / "ce-base-tiny" / "stale.txt").write_text("partial")
    camvid_recipes.main(argv, runner=_fake_runner(calls))
    assert len(calls) == 5 and not (tmp_path / "ce-base-tiny" / "stale.txt").exists()


def test_the_chosen_variant_follows_the_held_out_column_not_val() -> None:
    rows = [
        {"name": "a", "miou": 0.60, "selection_miou": 0.40},
        {"name": "b", "miou": 0.50, "selection_miou": 0.45},
        {"name": "c", "miou": 0.70, "selection_miou": None},
    ]
    assert camvid_recipes.chosen(rows) == "b"
    assert camvid_recipes.chosen([{"name": "x", "miou": 0.5}]) is None
    table = camvid_recipes.render([{**r, "wall_s": 60.0, "cpu_s": 60.0, "commands": []} for r in rows])
    assert "| b * |" in table and "| a |" in table


def test_given_architecture_trains_then_evaluates_the_selected_checkpoint(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    argv = [
        "--root",
        "r",
        "--out",
        str(tmp_path),
        "--loss",
        "ce",
        "--preset",
        "tiny",
        "--genotype",
        "g.json",
        "--macro-arch",
        "m.json",
    ]
    camvid_recipes.main(argv, runner=_fake_runner(calls))
    train, evaluate = calls
    assert "stage=train" in train and "genotype=g.json" in train and "trainer.max_epochs=${stage.train_epochs}" in train
    assert (
        "stage=eval" in evaluate and f"ckpt={tmp_path / 'ce-base-tiny' / 'train' / 'train' / 'last.ckpt'}" in evaluate
    )


def test_failed_variant_names_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="run.log"):
        camvid_recipes.main(
            ["--root", "r", "--out", str(tmp_path), "--loss", "ce", "--preset", "tiny"], runner=lambda args, log: 1
        )
    with pytest.raises(SystemExit):
        camvid_recipes.grid(["focal"], ["base"], ["tiny"])


@pytest.mark.slow  # two real micro pipelines in subprocesses: 1-5 min on a busy 2-core box
def test_debug_mode_runs_for_real(tmp_path: Path) -> None:
    assert camvid_recipes.main(["--debug", "--out", str(tmp_path), "--loss", "ce", "mfb"]) == 0
    rows = [json.loads((tmp_path / n / "done.json").read_text()) for n in ("ce-base-tiny", "mfb-base-tiny")]
    assert all(isinstance(r["miou"], float) and r["reported_split"] == "val" and r["cpu_s"] > 0 for r in rows)
    assert rows[1]["selected_on"].startswith("held-out 0.25 of train")
    assert (tmp_path / "mfb-base-tiny" / "train" / "class_stats.json").is_file()


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


def test_table_only_writes_the_finished_variants_and_runs_nothing(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    argv = ["--root", "data/camvid", "--out", str(tmp_path), "--loss", "ce", "--preset", "tiny"]
    camvid_recipes.main(argv, runner=_fake_runner(calls))  # ce-base-tiny finished
    table = tmp_path / "t.md"
    camvid_recipes.main([*argv[:4], "--loss", "ce", "mfb", "--table-only", "--table", str(table)], runner=None)
    assert len(calls) == 1  # mfb-base-tiny was not run
    text = table.read_text()
    assert "| ce-base-tiny * |" in text and "mfb-base-tiny" not in text


def test_recorded_eval_commands_name_the_checkpoint_inside_the_variant_folder() -> None:
    cmd = "rspnet experiment=camvid stage=eval paths.output_dir=outputs/r/ce-base-tiny/eval ckpt=/abs/x/outputs/r/ce-base-tiny/train/checkpoints/best-epoch054.ckpt"
    assert camvid_recipes._portable(cmd).endswith("ckpt=outputs/r/ce-base-tiny/train/checkpoints/best-epoch054.ckpt")
    assert (
        camvid_recipes._portable("rspnet stage=train paths.output_dir=o/train")
        == "rspnet stage=train paths.output_dir=o/train"
    )


def test_sizing_counts_a_held_out_sequence(make_cfg) -> None:
    assert camvid_sizing.split_sizes(make_cfg("experiment=camvid")) == (330, 37)
    assert camvid_sizing.split_sizes(make_cfg("experiment=camvid", "train.holdout_sequences=[0006R0]")) == (266, 101)
