"""docs/api.md: every ```python snippet runs, in order, in one namespace (as a reader would paste them), and
each `print(...)  # shown output` line prints exactly what its comment shows."""

from __future__ import annotations

import builtins
import io
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), flags=re.S)


# a one-line print whose trailing comment shows its output: `print(cfg.model.base_width)  # 32`
SHOWN = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<shown>.+?)\s*$")


def shown_outputs(block: str) -> dict[int, str]:
    """{line number in the block: the output its comment shows} for every one-line print with a comment."""
    return {i: m["shown"] for i, line in enumerate(block.splitlines(), 1) if (m := SHOWN.match(line))}


def recording_print(printed: dict[tuple[str, int], str]):
    """A `print` that also records what each call printed, by (snippet file name, line)."""

    def _print(*args, **kwargs) -> None:
        buffer = io.StringIO()
        builtins.print(*args, **{**kwargs, "file": buffer})
        caller = sys._getframe(1)
        printed[(caller.f_code.co_filename, caller.f_lineno)] = buffer.getvalue().rstrip("\n")
        builtins.print(buffer.getvalue(), end="")

    return _print


def test_shown_outputs_are_read_from_print_comments() -> None:
    block = 'x = 1  # not a print\nprint(x)  # 1\nprint(f"{x} a")  # 1 a  \nprint(x)\n'
    assert shown_outputs(block) == {2: "1", 3: "1 a"}


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
    printed: dict[tuple[str, int], str] = {}
    namespace: dict = {"print": recording_print(printed)}
    checked = 0
    for i, block in enumerate(blocks):
        name = f"docs/api.md snippet {i + 1}"
        exec(compile(block, name, "exec"), namespace)  # noqa: S102 - our own docs
        for line, shown in shown_outputs(block).items():
            assert printed.get((name, line)) == shown, f"{name}, line {line}: the docs show {shown!r}"
            checked += 1
    assert checked >= 5, "docs/api.md shows the output of too few prints to check"
    assert (tmp_path / "outputs" / "api" / "video" / "predictions" / "overlay.mp4").is_file()
    assert namespace["prof"]["images_per_s"] > 0 and namespace["metrics"]["macc"] is not None
