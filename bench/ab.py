"""A/B of two versions of `rspnet`: the optimisations' before/after numbers, in one run.

    .venv/bin/python -m bench.ab --before <git rev> [--repeats 3] [--write]

Exports `src/` of the `--before` revision (`git archive`) to a temporary folder and runs the
same workers against it and against the working tree, alternating before/after in fresh
processes `--repeats` times, so that both sides see the same machine load. Reports medians
of: the stage-1 search step (tiny, RSP on/off; `bench.pcdarts` worker), and the tiny derived
network's forward (`bench.derived_cost` worker). Times are process CPU time, 1 thread.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench import common

NAME = "optimisations_ab"
CASES = {  # label -> (worker module, spec)
    "search step, tiny, RSP on": ("bench.pcdarts", {"model": "tiny", "rsp": True, "pc_k": 0, "second_order": False,
                                                    "steps": 5, "warmup": 1}),
    "search step, tiny, RSP off": ("bench.pcdarts", {"model": "tiny", "rsp": False, "pc_k": 0, "second_order": False,
                                                     "steps": 5, "warmup": 1}),
    "search step, small (batch 2, 64x128), RSP on": ("bench.pcdarts", {"model": "small", "rsp": True, "pc_k": 0,
                                                                      "second_order": False, "steps": 3, "warmup": 1,
                                                                      "batch": 2, "crop": [64, 128]}),
    "search step, small (batch 2, 64x128), RSP off": ("bench.pcdarts", {"model": "small", "rsp": False, "pc_k": 0,
                                                                       "second_order": False, "steps": 3, "warmup": 1,
                                                                       "batch": 2, "crop": [64, 128]}),
    "derived forward, tiny 64x128, RSP on": ("bench.derived_cost", {"net": "rspnet", "model": "tiny", "rsp": True,
                                                                     "channels_last": False, "size": [64, 128],
                                                                     "steps": 9, "warmup": 2}),
}


def export_src(rev: str, dest: Path) -> Path:
    """`src/` (+ `experiments/`, which src reads) of git revision `rev` under `dest`; returns dest/src."""
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "src", "experiments"], cwd=common.REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest / "src"


def metrics(res: dict[str, Any]) -> tuple[float, float]:
    """(seconds, MiB) of a worker result, whichever worker produced it."""
    if "step_s" in res:
        return res["step_s"], res["memory_mib"]
    return res["cpu_latency_s"], res["cpu_memory_mib"]


def run(before: str, repeats: int, cases: list[str] | None = None) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{case: {"before": [(s, MiB)...], "after": [...]}} measured alternately."""
    chosen = {c: v for c, v in CASES.items() if not cases or any(k in c for k in cases)}
    out: dict[str, dict[str, list[tuple[float, float]]]] = {c: {"before": [], "after": []} for c in chosen}
    with tempfile.TemporaryDirectory(prefix="bench_ab_") as tmp:
        old = export_src(before, Path(tmp))
        for _ in range(repeats):
            for case, (module, spec) in chosen.items():
                out[case]["before"].append(metrics(common.run_worker(module, spec, src=old)))
                out[case]["after"].append(metrics(common.run_worker(module, spec)))
    return out


def table(res: dict[str, dict[str, list[tuple[float, float]]]]) -> str:
    """Medians before/after and their ratio."""
    rows = []
    for case, sides in res.items():
        tb, mb = (common.median([v[i] for v in sides["before"]]) for i in (0, 1))
        ta, ma = (common.median([v[i] for v in sides["after"]]) for i in (0, 1))
        rows.append([case, f"{tb:.3f}", f"{ta:.3f}", f"{ta / tb:.2f}", f"{mb:.0f}", f"{ma:.0f}", f"{ma / max(mb, 1e-9):.2f}"])
    return common.md_table(["case", "before (s)", "after (s)", "after / before", "before (MiB)", "after (MiB)",
                            "after / before"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, measure both versions, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision of the 'before' version")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=None, help="only cases whose label contains one of these")
    ap.add_argument("--title", default="Optimisations: before/after")
    ap.add_argument("--note", default="", help="what changed (a sentence for the doc)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(args.before, args.repeats, args.cases)
    text = table(res)
    print(text)
    if args.write:
        body = "\n".join([f"## {args.title}", "", common.device_line(threads=1),
                          f"Command: `{common.command_line('bench.ab', argv)}`", "",
                          f"Before = `src/` at `{args.before}`, after = the working tree; medians of {args.repeats}",
                          "alternating fresh processes; time = process CPU time per step/forward (1 thread);",
                          "memory = growth of peak RSS during the timed calls. " + args.note, "", text])
        common.write_section(args.write, NAME, body)
    return res


if __name__ == "__main__":
    main()
