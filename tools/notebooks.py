"""Execute the notebooks in notebooks/ and save them with their outputs (`make notebooks`).

    python -m tools.notebooks            # every notebooks/*.ipynb, in place
    python -m tools.notebooks NAME ...   # only these (e.g. inspect_run.ipynb)

Each notebook runs top to bottom in a fresh kernel, from notebooks/ (as Jupyter would), with W&B offline.
A notebook is written back only when it ran without an error and its outputs name no machine path
(the committed files are scanned for those by tests/bench/test_common.py); else the command
names the notebook and the problem and exits 1. Cell timings are not recorded, so a rerun changes only what
the code computes (timings it prints, e.g. frames/s).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# the pattern of the tracked-file scan: an absolute path into this machine's folders
MACHINE_PATH = re.compile(r"(^|[^\w.~-])/(work|tmp|home|Users)/")


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """The notebook at `path` run top to bottom (outputs filled in); raises on a failing cell."""
    os.environ.setdefault("WANDB_MODE", "offline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def output_text(nb: nbformat.NotebookNode) -> str:
    """Every text output of the code cells (streams, text/plain results, errors), joined by lines."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
            parts += out.get("traceback", [])
    return "\n".join(parts)


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Why `nb`'s outputs must not be committed: machine paths in them (empty when fine)."""
    return [
        f"machine path in an output: {line.strip()!r}"
        for line in output_text(nb).splitlines()
        if MACHINE_PATH.search(line)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names in notebooks/ (default: all)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / name for name in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    failed = 0
    for path in paths:
        if not path.is_file():
            print(f"notebooks: error: no notebook {path.relative_to(REPO)}", file=sys.stderr)
            return 2
        try:
            nb = execute(path)
        except CellExecutionError as err:  # the failing cell's source and traceback
            failed += 1
            print(f"notebooks: {path.relative_to(REPO)} not written, a cell failed:\n{err}", file=sys.stderr)
            continue
        found = problems(nb)
        if found:
            failed += 1
            print(f"notebooks: {path.relative_to(REPO)} not written: {'; '.join(found[:3])}", file=sys.stderr)
            continue
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
