"""experiments.results, the paper table: local run outputs (JSON, CSV logs) -> results table."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from experiments.results import PAPER_BUDGETS, find_runs, main
from experiments.results import paper_table as render
from rspnet.resources import genotype_path


def _artifact(path: Path, epochs: int, provenance: str | None = "searched") -> str:
    """A fake genotype.json/macro.json: only what collect reads (search epochs, provenance)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    d = {"search": {"dataset": "cityscapes", "epochs": epochs}} | ({"provenance": provenance} if provenance else {})
    path.write_text(json.dumps(d))
    return str(path)


def _run(
    d: Path,
    stage: str,
    dataset: str,
    rsp: bool,
    head: str = "fcn",
    init_ckpt: str | None = None,
    genotype: str | None = None,
    macro_arch: str | None = None,
) -> Path:
    """A fake rspnet output dir with the config.yaml the CLI saves; train runs get a full-budget searched architecture."""
    d.mkdir(parents=True)
    if stage == "train" and genotype is None:
        genotype = _artifact(d.parent / f"{d.name}_arch" / "genotype.json", PAPER_BUDGETS["cell_search"])
        macro_arch = _artifact(d.parent / f"{d.name}_arch" / "macro.json", PAPER_BUDGETS["macro_search"])
    cfg = {
        "stage": {"name": stage},
        "dataset": {"name": dataset},
        "rsp": {"enabled": rsp},
        "head": {"name": head},
        "train": {"init_ckpt": init_ckpt},
        "logger": {"tags": []},
        "genotype": genotype,
        "macro_arch": macro_arch,
    }
    (d / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if stage == "train":
        (d / "train.json").write_text(json.dumps({"epochs": PAPER_BUDGETS["train"]}))
    return d


def test_collect_fills_paper_rows_from_json_and_csv(tmp_path: Path) -> None:
    # Table 1 "Ours + RSP": train.json
    r1 = _run(tmp_path / "sweep" / "0", "train", "cityscapes", True)
    (r1 / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 17_000_000, "epochs": 484}))
    # Table 1 "Ours": only a CSV log (best val/miou wins)
    r2 = _run(tmp_path / "sweep" / "1", "train", "cityscapes", False)
    (r2 / "csv").mkdir()
    (r2 / "csv" / "metrics.csv").write_text("epoch,val/miou,train/loss\n0,0.25,\n1,,0.3\n2,0.375,\n")
    # Table 2 "Ours + RSP (Mapillary)": fine-tuned, logged to W&B and the csv beside it: the csv's number;
    # W&B's own files are not read (a W&B-only run has no number here, and its folder is not a run)
    r3 = _run(tmp_path / "ft", "train", "cityscapes", True, init_ckpt="mapillary/last.ckpt")
    files = r3 / "wandb" / "offline-run-20260101_000000-abc" / "files"
    files.mkdir(parents=True)
    (files / "wandb-summary.json").write_text(json.dumps({"val/miou": 0.875}))
    (files / "config.yaml").write_text(OmegaConf.to_yaml({"stage": {"name": "train"}}))
    (r3 / "csv").mkdir()
    (r3 / "csv" / "metrics.csv").write_text("epoch,val/miou\n0,0.625\n")
    # a pipeline: counted once (its eval/ subfolder is not a second run); not cityscapes -> "other runs"
    p = _run(tmp_path / "demo", "pipeline", "synthetic", True)
    (p / "pipeline.json").write_text(json.dumps({"miou": 0.3, "params": 50_000}))
    _run(p / "eval", "eval", "synthetic", True)
    # a search run: supernet mIoU never fills a paper row
    s = _run(tmp_path / "search", "cell_search", "cityscapes", False)
    (s / "csv").mkdir()
    (s / "csv" / "metrics.csv").write_text("epoch,val/miou\n0,0.9\n")

    runs = find_runs([tmp_path])
    assert sorted(r.path.name for r in runs) == ["0", "1", "demo", "ft", "search"]  # not the *_arch folders
    table = render(runs)
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| Table")}
    assert "| 50.0 | 17.00 | 1 |" in rows["Ours + RSP"]
    assert "| 37.5 |" in rows["Ours"]
    assert "| 62.5 |" in rows["Ours + RSP (Mapillary)"] and "87.5" not in table
    assert "not run here" in rows["Ours + OCR"] and "not run here" in rows["Ours (Mapillary)"]
    assert "90.0" not in rows["Ours"]
    other = table.split("Other local runs")[1]
    assert (
        "synthetic" in other
        and "| 30.0 | 0.05 | ? / ? / ? | unknown | pipeline.json |" in other
        and "cell_search" in other
    )


def test_collect_cli_rejects_missing_folder(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_collect_refuses_unsearched_and_under_budget_runs(tmp_path: Path) -> None:
    # Table 1 "Ours": a train run on the shipped preset (paper_like + default_macro), full training budget
    preset = _run(tmp_path / "preset", "train", "cityscapes", False, genotype=str(genotype_path("paper_like")))
    (preset / "train.json").write_text(json.dumps({"best_val_miou": 0.7, "params": 67e6, "epochs": 484}))
    # Table 1 "Ours + RSP": a pipeline run at laptop budgets (older pipeline.json: read from its stage folders)
    short = _run(tmp_path / "short", "pipeline", "cityscapes", True)
    (short / "pipeline.json").write_text(json.dumps({"miou": 0.6, "params": 17e6}))
    _artifact(short / "cell_search" / "genotype.json", 3, provenance=None)  # legacy file: inferred "searched"
    _artifact(short / "macro_search" / "macro.json", 3, provenance=None)
    (short / "train").mkdir()
    (short / "train" / "train.json").write_text(json.dumps({"epochs": 8}))
    # Table 1 "Ours + RSP": a full pipeline with the record written by this version -> filed
    full = _run(tmp_path / "full", "pipeline", "cityscapes", True)
    (full / "pipeline.json").write_text(
        json.dumps(
            {
                "miou": 0.55,
                "params": 17.4e6,
                "epochs": {"cell_search": 300, "macro_search": 40, "train": 484},
                "arch_provenance": {"genotype": "searched", "macro": "searched"},
            }
        )
    )
    # Table 1 "Ours": a random-sampling baseline at full budget -> not filed
    rnd = _run(tmp_path / "random", "train", "cityscapes", False)
    (rnd / "train.json").write_text(
        json.dumps({"best_val_miou": 0.9, "epochs": 484, "arch_provenance": {"genotype": "random", "macro": "random"}})
    )

    runs = {r.path.name: r for r in find_runs([tmp_path])}
    assert runs["preset"].arch == {"genotype": "preset", "macro": "preset"}
    assert runs["short"].epochs == {"cell_search": 3, "macro_search": 3, "train": 8}
    assert runs["short"].arch == {"genotype": "searched", "macro": "searched"}
    table = render(list(runs.values()))
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| Table")}
    assert "not run here" in rows["Ours"] and "| 0 |" in rows["Ours"]  # neither preset nor random is filed
    assert "| 55.0 | 17.40 | 1 |" in rows["Ours + RSP"]  # the full run, not the better under-budget one
    held = {
        line.split("|")[1].strip(): line
        for line in table.split("Not filed under a paper row")[1].splitlines()
        if line.startswith("| `")
    }
    assert "architecture not searched (genotype: preset, macro: preset)" in held[f"`{preset}`"]
    assert "Table 1 Ours" in held[f"`{preset}`"] and "| 0 / ? / 484 |" in held[f"`{preset}`"]
    assert "cell_search 3/300 epochs; macro_search 3/40 epochs; train 8/484 epochs" in held[f"`{short}`"]
    assert "genotype: random" in held[f"`{rnd}`"] and "| 90.0 |" in held[f"`{rnd}`"]
    assert f"`{full}`" not in held


def test_held_out_validation_is_not_reported_as_val(tmp_path: Path) -> None:
    from experiments.results import read_run

    run = tmp_path / "train_only"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text("epoch,val/miou\n0,0.5\n")
    (run / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 10, "selection": {"split": "holdout"}}))
    assert read_run(run).miou is None  # a held-out-slice number is not the reported val mIoU
    (run / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 10, "selection": {"split": "val"}}))
    assert read_run(run).miou == 0.5 and read_run(run).source == "train.json"


def test_collect_reads_the_root_tags_and_the_recipes_logger_tags(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "r", "train", "cityscapes", True)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.tags = ["pretrain-mapillary", "mine"]  # `tags=[...]` on the command line
    cfg.logger.tags = ["finetune", "mine"]
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run,) = find_runs([tmp_path])
    assert run.tags == ["pretrain-mapillary", "mine", "finetune"] and run.pretrain
