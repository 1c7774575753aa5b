"""docs/api.md: every ```python snippet runs, in order, in one namespace (as a reader would paste them)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), flags=re.S)


def test_api_doc_snippets_run(tmp_path: Path, monkeypatch) -> None:
    blocks = snippets()
    assert len(blocks) >= 8
    text = "\n".join(blocks)
    for name in (
        "rspnet.compose",
        "rspnet.run",
        "rspnet.load_model",
        "rspnet.Segmenter",
        ".colorize",
        ".overlay",
        "zoo:",
        ".onnx",
        '"profile"',
        ".mp4",
    ):
        assert name in text, f"docs/api.md has no snippet using {name}"
    # run from a scratch folder that looks like the repository root (experiments/ only)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md snippet {i + 1}", "exec"), namespace)  # noqa: S102 - our own docs
    assert (tmp_path / "outputs" / "api" / "video" / "predictions" / "overlay.mp4").is_file()
    assert namespace["prof"]["images_per_s"] > 0 and namespace["metrics"]["macc"] is not None
