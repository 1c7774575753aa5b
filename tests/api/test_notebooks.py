"""notebooks/segment_folder_video.ipynb runs top to bottom (trains a tiny net, segments a folder and a video)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("inspect_run.ipynb", "segment_folder_video.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_use_only_the_public_api(name: str) -> None:
    import nbformat

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


def test_segment_folder_video_notebook_runs() -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / "segment_folder_video.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= 2  # folder and video figures
    text = "".join(o.get("text", "") for o in outputs)
    assert "12 frames at" in text
