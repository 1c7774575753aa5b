"""W&B offline, read back from the run files: groups, artifact lineage, the best-score summary, eval's own run,
several loggers at once (issue 27 items 1 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from rspnet.errors import ConfigError
from rspnet.utils.loggers import WANDB_GROUP_FILE, build_logger, finish_loggers, log_file_artifact
from tests.utils.conftest import read_finished_run


def _run(out: Path) -> dict:
    finish_loggers()
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    return read_finished_run(run_dir)  # wandb's service may still be writing the log when finish() returns


def test_inputs_are_used_artifacts_in_the_producers_group(make_cfg, tmp_path: Path, offline_wandb) -> None:
    """cell search logs the genotype; macro search uses it (same artifact: name and digest) in the same group."""
    cell = tmp_path / "cell_search"
    cell.mkdir()
    genotype = cell / "genotype.json"
    genotype.write_text(json.dumps({"ops": ["conv_3x3"]}))
    producer = build_logger(make_cfg("stage=cell_search", "logger=wandb"), cell)
    log_file_artifact(producer, genotype, "genotype")
    made = _run(cell)
    group = (cell / WANDB_GROUP_FILE).read_text().strip()
    assert (
        made["run"]["group"] == group and group.startswith("cell_search-") and made["run"]["job_type"] == "cell_search"
    )
    macro = tmp_path / "macro_search"
    build_logger(make_cfg("stage=macro_search", "logger=wandb", f"genotype={genotype}"), macro)
    used = _run(macro)
    assert used["run"]["group"] == group and used["run"]["job_type"] == "macro_search"
    ((out_art,), (in_art,)) = ([a for a in made["artifacts"]], [a for a in used["artifacts"]])
    assert not out_art["used"] and in_art["used"]  # logged by the producer, used by the consumer
    assert (in_art["name"], in_art["type"], in_art["digest"]) == (out_art["name"], "genotype", out_art["digest"])


def test_an_explicit_group_wins(make_cfg, tmp_path: Path, offline_wandb) -> None:
    build_logger(make_cfg("stage=train", "logger=wandb", "logger.group=mine"), tmp_path)
    assert _run(tmp_path)["run"]["group"] == "mine" and (tmp_path / WANDB_GROUP_FILE).read_text().strip() == "mine"


def test_summary_keeps_the_best_selection_score(make_cfg, tmp_path: Path, offline_wandb) -> None:
    logger = build_logger(make_cfg("stage=train", "logger=wandb"), tmp_path)
    for step, value in enumerate((0.5, 0.75, 0.625)):
        logger.log_metrics({"select/miou": value, "val/miou": value / 2}, step=step)
    run = _run(tmp_path)
    assert run["metrics"]["select/miou"] == ["max"]
    assert run["summary"]["select/miou"] == {"max": 0.75}  # the best, not the last (0.625)
    assert run["summary"]["val/miou"] == pytest.approx(0.3125, abs=1e-9)  # val: monitoring, the last value


def test_eval_logs_its_numbers_in_its_own_run(make_cfg, tmp_path: Path, offline_wandb) -> None:
    """stage=eval's logging: eval/* scalars, the per-class table and the confusion matrix, job_type eval."""
    from rspnet.stages.eval import log_eval, write_confusion

    train = tmp_path / "train"
    (train / "checkpoints").mkdir(parents=True)
    ckpt = train / "checkpoints" / "best.ckpt"
    ckpt.write_bytes(b"weights")
    build_logger(make_cfg("stage=train", "logger=wandb"), train)
    finish_loggers()
    out = tmp_path / "eval"
    out.mkdir()
    logger = build_logger(make_cfg("stage=eval", "logger=wandb", f"ckpt={ckpt}"), out)
    write_confusion(out, torch.tensor([[3, 1], [0, 4]]), ["road", "sky"])
    metrics = {
        "miou": 0.625,
        "macc": 0.75,
        "pixel_acc": 0.875,
        "iou_per_class": {"road": 0.75, "sky": 0.5},
        "acc_per_class": {"road": 0.75, "sky": 1.0},
        "split": "val",
        "num_images": 2,
    }
    log_eval(logger, metrics, out)
    run = _run(out)
    assert run["run"]["job_type"] == "eval" and run["run"]["group"] == (train / WANDB_GROUP_FILE).read_text().strip()
    assert run["summary"]["eval/miou"] == 0.625 and run["summary"]["eval/iou/sky"] == 0.5
    assert run["summary"]["eval/split"] == "val"
    assert run["summary"]["eval/per_class/nrows"] == 2 and run["summary"]["eval/confusion_counts/ncols"] == 3
    assert run["summary"]["eval/confusion_matrix/_type"] == "image-file"
    assert list((out / "wandb").glob("offline-run-*/files/media/images/eval/confusion_matrix*.png"))
    (model,) = [a for a in run["artifacts"] if a["type"] == "model"]
    assert model["used"]


def test_several_loggers_at_once(make_cfg, tmp_path: Path, offline_wandb) -> None:
    loggers = build_logger(make_cfg("stage=train", "logger=wandb", "extra_loggers=[csv]"), tmp_path)
    assert [type(lg) for lg in loggers] == [WandbLogger, CSVLogger]
    assert loggers[0].experiment.job_type == "train"  # the extra wandb.yaml interpolations resolve too
    for lg in loggers:
        lg.log_metrics({"select/miou": 0.5}, step=0)
        lg.save()
    assert "select/miou" in (tmp_path / "csv" / "metrics.csv").read_text()
    assert _run(tmp_path)["history"][0]["select/miou"] == 0.5
    both = build_logger(make_cfg("stage=train", "logger=csv", "extra_loggers=[wandb]"), tmp_path / "b")
    assert [type(lg) for lg in both] == [CSVLogger, WandbLogger] and both[1].experiment.job_type == "train"


def test_bad_extra_loggers_are_one_config_error(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="extra_loggers: no logger config 'cvs'; choose from csv"):
        build_logger(make_cfg("logger=csv", "extra_loggers=[cvs]"), tmp_path)
    with pytest.raises(ConfigError, match=r"extra_loggers\[0\]: a second CSVLogger"):
        build_logger(make_cfg("logger=csv", "extra_loggers=[csv]"), tmp_path)


@pytest.mark.slow
def test_pipeline_on_wandb_shows_eval_metrics_lineage_and_plots(rspnet_cli, tmp_path: Path) -> None:
    """`rspnet experiment=demo logger=wandb` (tiny budgets): four W&B runs in one group, genotype -> macro ->
    model lineage, eval's numbers in its own run, the pictures logged."""
    out = tmp_path / "demo"
    home = {v: str(tmp_path / "wandb_home") for v in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}
    budgets = [f"stage.{s}_epochs=2" for s in ("cell_search", "macro_search", "train")]
    proc = rspnet_cli(
        "experiment=demo",
        "debug=tiny",
        "logger=wandb",
        *budgets,
        f"paths.output_dir={out}",
        "print_config=false",
        env=home,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {stage: _run(out / stage) for stage in ("cell_search", "macro_search", "train", "eval")}
    assert len({r["run"]["group"] for r in runs.values()}) == 1
    assert [r["run"]["job_type"] for r in runs.values()] == list(runs)
    edges = {stage: {(a["type"], a["used"]): a["digest"] for a in r["artifacts"]} for stage, r in runs.items()}
    assert edges["macro_search"][("genotype", True)] == edges["cell_search"][("genotype", False)]
    assert edges["train"][("genotype", True)] == edges["cell_search"][("genotype", False)]
    assert edges["train"][("macro", True)] == edges["macro_search"][("macro", False)]
    assert edges["eval"][("model", True)] == edges["train"][("model", False)]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert runs["eval"]["summary"]["eval/miou"] == pytest.approx(metrics["miou"], abs=1e-6)
    train_json = json.loads((out / "train" / "train.json").read_text())
    assert runs["train"]["summary"]["select/miou"]["max"] == pytest.approx(train_json["best_val_miou"], abs=1e-6)
    logged = {stage: {k.split("/filenames")[0] for row in r["history"] for k in row} for stage, r in runs.items()}
    assert {"arch/alpha_evolution", "curves/learning_curves"} <= logged["cell_search"]
    assert {"arch/beta_evolution", "arch/path_evolution", "curves/learning_curves"} <= logged["macro_search"]
    assert "curves/learning_curves" in logged["train"] and "eval/confusion_matrix/_type" in logged["eval"]
