"""logger=wandb with WANDB_MODE=offline: the run folder holds images, metrics, config and artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.results import find_runs
from tests.utils.conftest import read_finished_run


def test_wandb_offline_run_has_images(make_cfg, tmp_path: Path, monkeypatch) -> None:
    from rspnet.stages import run_stage  # seeded: the numbers do not depend on the tests run before it
    from rspnet.utils.loggers import finish_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))  # W&B's caches and artifact staging stay in tmp
    out = tmp_path / "run"
    cfg = make_cfg(
        "stage=cell_search",
        "logger=wandb",
        "extra_loggers=[csv]",  # the numbers for experiments.results
        "logger.group=test_group",
        "logger.tags=[t1]",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "dataset.num_train=8",
        "dataset.num_val=4",
        "train.holdout_fraction=0.5",
        out=out,
    )  # 4 held out
    try:
        run_stage(cfg)
    finally:
        finish_loggers()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    images = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    names = " ".join(p.name for p in images)
    assert "alpha_heatmap" in names and "cell" in names  # per-epoch heatmap and cell picture
    assert all(f"prediction_{i}" in names for i in range(4))  # validation overlays (batch size 4)
    logged = read_finished_run(runs[0])  # wandb may still be writing the log after finish()
    assert logged["config"]["stage"] == {"name": "cell_search"}  # the resolved rspnet config
    assert logged["config"]["logger"]["group"] == "test_group"
    assert isinstance(logged["summary"]["select/miou"]["max"], float)  # the selection split (held-out slice)
    assert any("arch/alpha_heatmap/filenames" in row for row in logged["history"])
    assert {a["type"] for a in logged["artifacts"]} == {"genotype"}  # genotype.json as an artifact
    assert any("curves/learning_curves/filenames" in row for row in logged["history"])
    assert any("arch/alpha_evolution/filenames" in row for row in logged["history"])
    (found,) = find_runs([out])  # experiments.results reads the same numbers from the csv logged beside W&B
    assert found.stage == "cell_search" and found.source == "csv/metrics.csv"
    assert found.miou == max(row["select/miou"] for row in logged["history"] if "select/miou" in row)


def test_each_stage_gets_its_own_wandb_run(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """A second logger in the same process (the next pipeline stage) must not attach to the first run."""
    from rspnet.utils.loggers import build_logger, finish_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    try:
        first = build_logger(make_cfg("stage=cell_search", "logger=wandb"), tmp_path / "a")
        first_id = first.experiment.id
        second = build_logger(make_cfg("stage=macro_search", "logger=wandb"), tmp_path / "b")
        assert second.experiment.id != first_id
        assert second.experiment.config["stage"] == {"name": "macro_search"}
    finally:
        finish_loggers()
    assert len(list((tmp_path / "a" / "wandb").glob("offline-run-*"))) == 1
    assert len(list((tmp_path / "b" / "wandb").glob("offline-run-*"))) == 1


def test_reading_a_run_waits_for_its_exit_record(tmp_path: Path) -> None:
    """A log without the exit record (wandb still writing, or a run that never finished) is not read as a run."""
    (tmp_path / "run-x.wandb").write_bytes(b":W&B" + bytes(3))  # the file header, no records yet
    with pytest.raises(TimeoutError, match="no exit record"):
        read_finished_run(tmp_path, timeout_s=0.3)
