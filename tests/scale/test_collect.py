"""experiments.collect: local run outputs (JSON, CSV logs, W&B offline summaries) -> results table."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from experiments.collect import find_runs, main, render


def _run(d: Path, stage: str, dataset: str, rsp: bool, head: str = "fcn", init_ckpt: str | None = None) -> Path:
    """A fake rspnet output dir with the config.yaml the CLI saves."""
    d.mkdir(parents=True)
    cfg = {"stage": {"name": stage}, "dataset": {"name": dataset}, "rsp": {"enabled": rsp},
           "head": {"name": head}, "train": {"init_ckpt": init_ckpt}, "logger": {"tags": []}}
    (d / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return d


def test_collect_fills_paper_rows_from_json_csv_and_wandb(tmp_path: Path) -> None:
    # Table 1 "Ours + RSP": train.json
    r1 = _run(tmp_path / "sweep" / "0", "train", "cityscapes", True)
    (r1 / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 17_000_000}))
    # Table 1 "Ours": only a CSV log (best val/miou wins)
    r2 = _run(tmp_path / "sweep" / "1", "train", "cityscapes", False)
    (r2 / "csv").mkdir()
    (r2 / "csv" / "metrics.csv").write_text("epoch,val/miou,train/loss\n0,0.25,\n1,,0.3\n2,0.375,\n")
    # Table 2 "Ours + RSP (Mapillary)": fine-tuned, only a W&B offline summary
    r3 = _run(tmp_path / "ft", "train", "cityscapes", True, init_ckpt="mapillary/last.ckpt")
    files = r3 / "wandb" / "offline-run-20260101_000000-abc" / "files"
    files.mkdir(parents=True)
    (files / "wandb-summary.json").write_text(json.dumps({"val/miou": 0.625}))
    # a pipeline: counted once (its eval/ subfolder is not a second run); not cityscapes -> "other runs"
    p = _run(tmp_path / "demo", "pipeline", "synthetic", True)
    (p / "pipeline.json").write_text(json.dumps({"miou": 0.3, "params": 50_000}))
    _run(p / "eval", "eval", "synthetic", True)
    # a search run: supernet mIoU never fills a paper row
    s = _run(tmp_path / "search", "cell_search", "cityscapes", False)
    (s / "csv").mkdir()
    (s / "csv" / "metrics.csv").write_text("epoch,val/miou\n0,0.9\n")

    runs = find_runs([tmp_path])
    assert sorted(r.path.name for r in runs) == ["0", "1", "demo", "ft", "search"]
    table = render(runs)
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| Table")}
    assert "| 50.0 | 17.00 | 1 |" in rows["Ours + RSP"]
    assert "| 37.5 |" in rows["Ours"]
    assert "| 62.5 |" in rows["Ours + RSP (Mapillary)"] and "wandb" not in rows["Ours + RSP (Mapillary)"]
    assert "not run here" in rows["Ours + OCR"] and "not run here" in rows["Ours (Mapillary)"]
    assert "90.0" not in rows["Ours"]
    other = table.split("Other local runs")[1]
    assert "synthetic" in other and "| 30.0 | 0.05 | pipeline.json |" in other and "cell_search" in other


def test_collect_cli_rejects_missing_folder(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_held_out_validation_is_not_reported_as_val(tmp_path: Path) -> None:
    from experiments.collect import read_run

    run = tmp_path / "train_only"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text("epoch,val/miou\n0,0.5\n")
    (run / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 10,
                                                "selection": {"split": "holdout"}}))
    assert read_run(run).miou is None  # a held-out-slice number is not the reported val mIoU
    (run / "train.json").write_text(json.dumps({"best_val_miou": 0.5, "params": 10, "selection": {"split": "val"}}))
    assert read_run(run).miou == 0.5 and read_run(run).source == "train.json"
