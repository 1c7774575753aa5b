"""The notebooks: committed with their outputs (`make notebooks` = `python -m tools.notebooks` writes them), no
machine path in those outputs, and each runs top to bottom on a fresh checkout (inspect_run makes its own run)."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from tools import notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("inspect_run.ipynb", "segment_folder_video.ipynb")
# pictures each notebook shows: inspect_run the cell, alpha evolution, trellis, beta and path evolution, learning
# curves, confusion matrix, predictions; segment_folder_video a folder's and a video's overlays
MIN_PICTURES = {"inspect_run.ipynb": 8, "segment_folder_video.ipynb": 2}
TMP, HOME = "/".join(("", "tmp", "")), "/".join(("", "home", ""))  # spelled out, these would trip the path scan


def _pictures(nb: nbformat.NotebookNode) -> int:
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    return len([o for o in outputs if "image/png" in o.get("data", {})])


def _errors(nb: nbformat.NotebookNode) -> list:
    return [
        o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if o.output_type == "error"
    ]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_use_only_the_public_api(name: str) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("rspnet"), f"{name}: from {node.module} import ..."
            if isinstance(node, ast.Import):
                assert all(a.name == "rspnet" or not a.name.startswith("rspnet") for a in node.names), name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rspnet":
                assert node.attr in __import__("rspnet").__all__, f"{name}: rspnet.{node.attr} is not public"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_with_small_clean_outputs(name: str) -> None:
    path = REPO / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), f"{name}: not executed; run `make notebooks`"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{name}: not run top to bottom"
    assert not _errors(nb) and notebooks.problems(nb) == []
    assert _pictures(nb) >= MIN_PICTURES[name]
    assert path.stat().st_size < 1_000_000, f"{name}: {path.stat().st_size} bytes"


def test_machine_paths_in_outputs_are_found() -> None:
    def nb_printing(text: str) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell(
            "print(x)", outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)]
        )
        return nbformat.v4.new_notebook(cells=[cell])

    assert notebooks.problems(nb_printing("checkpoint: train/checkpoints/last.ckpt\n")) == []
    assert len(notebooks.problems(nb_printing(f"-> {TMP}rspnet_x/video/overlay.mp4\n"))) == 1
    traceback = nbformat.v4.new_output("error", ename="E", evalue="", traceback=[f'File "{HOME}u/x.py", line 1'])
    assert len(
        notebooks.problems(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[traceback])]))
    )


def test_make_notebooks_writes_clean_notebooks_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m tools.notebooks` fills in outputs; a notebook whose outputs name a machine path stays as it was."""
    for name, source in (
        ("clean.ipynb", "print('images/scene_0.png')"),
        ("leaky.ipynb", f"print('{TMP}scratch/x.png')"),
    ):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), tmp_path / name)
    before = (tmp_path / "leaky.ipynb").read_text()
    monkeypatch.setattr(notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(notebooks, "REPO", tmp_path)
    assert notebooks.main([]) == 1
    clean = nbformat.read(tmp_path / "clean.ipynb", as_version=4)
    assert clean.cells[0].outputs[0].text == "images/scene_0.png\n"
    assert (tmp_path / "leaky.ipynb").read_text() == before


def _run(name: str, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.delenv("RSPNET_RUN_DIR", raising=False)  # as on a fresh clone: inspect_run makes its own run
    monkeypatch.setenv("WANDB_MODE", "offline")
    nb = notebooks.execute(REPO / "notebooks" / name, timeout=300)
    assert not _errors(nb)
    assert notebooks.problems(nb) == []  # what `make notebooks` would commit
    assert _pictures(nb) >= MIN_PICTURES[name]
    return nb


@pytest.mark.slow  # ~25 s: a small pipeline run (4 + 4 search epochs, 15 training epochs)
def test_inspect_run_notebook_runs_on_a_fresh_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    text = notebooks.output_text(_run("inspect_run.ipynb", monkeypatch))
    assert "val mIoU" in text and "best select/miou" in text and "predicted here:" in text
    assert "macro_search/path_evolution.png" in text and "train/learning_curves.png" in text


def test_segment_folder_video_notebook_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = notebooks.output_text(_run("segment_folder_video.ipynb", monkeypatch))
    assert "12 frames at" in text and "-> video/predictions/overlay.mp4" in text
