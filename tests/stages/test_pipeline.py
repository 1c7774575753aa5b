"""stage=pipeline end to end at a micro size, and the inspection notebook run on its outputs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rspnet.genotype import Genotype, MacroArch
from rspnet.stages.pipeline import run as run_pipeline

REPO = Path(__file__).resolve().parents[2]
MICRO = (
    "stage=pipeline",
    "debug=tiny",
    "model.search_layers=2",
    "model.layers=2",
    "model.cells_per_node=1",
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
    "stage.cell_search_epochs=1",
    "stage.macro_search_epochs=1",
    "stage.train_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Path:
    """Run the micro pipeline once for the tests of this module."""
    from omegaconf import open_dict

    from rspnet.composition import compose

    out = tmp_path_factory.mktemp("pipeline")
    cfg = compose(*MICRO)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    result = run_pipeline(cfg)
    # a sweep optimises the selection split (held-out slice of train), never the reported val
    train = json.loads((out / "train" / "train.json").read_text())
    assert result["objective"] == train["best_val_miou"] == result["selection_miou"] and result["split"] == "val"
    assert result["artifacts"]["checkpoint"] == train["selected_ckpt"] == train["best_ckpt"]
    return out


def test_pipeline_writes_every_artifact(pipeline_run):
    out = pipeline_run
    summary = json.loads((out / "pipeline.json").read_text())
    Genotype.load(out / "cell_search" / "genotype.json")
    macro = MacroArch.load(out / "macro_search" / "macro.json")
    assert macro.layers == 2
    for name in ("cell_picture", "trellis_picture", "checkpoint", "metrics"):
        assert Path(summary["artifacts"][name]).is_file(), name
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["split"] == "val"
    assert summary["miou"] == pytest.approx(metrics["miou"])
    assert summary["params"] > 0
    # every Lightning stage's result is written once, by WriteResult on rank 0, and is what the pipeline recorded
    for stage, name in (
        ("cell_search", "search.json"),
        ("macro_search", "search.json"),
        ("train", "train.json"),
        ("eval", "metrics.json"),
    ):
        written = json.loads((out / stage / name).read_text())
        done = json.loads((out / stage / "done.json").read_text())["result"]
        assert written.items() <= done.items(), stage
    # the train stage read the searched artifacts, not defaults
    train = json.loads((out / "train" / "train.json").read_text())
    assert train["genotype"].endswith("cell_search/genotype.json")
    assert train["macro_arch"].endswith("macro_search/macro.json")


def test_notebook_runs_on_pipeline_outputs(pipeline_run):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / "inspect_run.ipynb", as_version=4)
    os.environ["RSPNET_RUN_DIR"] = str(pipeline_run)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
        ).execute()
    finally:
        os.environ.pop("RSPNET_RUN_DIR", None)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # cell, trellis, predictions


def test_readme_lists_the_files_each_pipeline_stage_writes(pipeline_run):
    """README "What a run writes" agrees with a real run (besides config, logs and the pipeline's done.json)."""
    from tests.test_readme import readme_artifacts

    table = readme_artifacts()
    common = {"config.yaml", "rspnet.log", ".hydra", "csv", "done.json"}
    for stage in ("cell_search", "macro_search", "train", "eval"):
        found = {p.name + ("/" if p.is_dir() else "") for p in (pipeline_run / stage).iterdir()}
        found -= {c + "/" for c in common} | common
        listed = {name for name in table[stage] if "/" not in name[:-1] and not name.endswith(".ckpt")}
        assert found == listed, stage
        ckpts = {re.sub(r"\d{3}", "NNN", p.name) for p in (pipeline_run / stage / "checkpoints").glob("*.ckpt")}
        assert ckpts == {name for name in table[stage] if name.endswith(".ckpt")}, stage
