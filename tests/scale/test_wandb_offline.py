"""logger=wandb with WANDB_MODE=offline: the run folder holds the logged images and summary."""

from __future__ import annotations

from pathlib import Path

from experiments.collect import find_runs
from experiments.wandb_offline import read_offline_run


def test_wandb_offline_run_has_images(make_cfg, tmp_path: Path, monkeypatch) -> None:
    from rspnet.stages.search import run_cell_search
    from rspnet.utils.loggers import finish_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # W&B's own cache/settings stay in tmp too
    out = tmp_path / "run"
    cfg = make_cfg("stage=cell_search", "logger=wandb", "logger.group=test_group", "logger.tags=[t1]",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                   "dataset.num_train=8", "dataset.num_val=4", out=out)
    try:
        run_cell_search(cfg)
    finally:
        finish_loggers()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    images = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert any("alpha_heatmap" in p.name for p in images), images
    logged = read_offline_run(runs[0])
    assert logged["config"]["stage"] == {"name": "cell_search"}  # the resolved rspnet config
    assert logged["config"]["logger"]["group"] == "test_group"
    assert isinstance(logged["summary"]["val/miou"], float)
    assert any("arch/alpha_heatmap/filenames" in row for row in logged["history"])
    (found,) = find_runs([out])  # experiments.collect reads the same run
    assert found.stage == "cell_search" and found.miou == max(
        row["val/miou"] for row in logged["history"] if "val/miou" in row)
