"""Scaling of the stage-1 search step: time and memory vs depth L, width B and image size.

    .venv/bin/python -m bench.scaling [--steps 3] [--quick] [--write]

Around the tiny preset (L = 3, B = 8, batch 4 of 64x128) one factor varies at a time, RSP on
and off; every point is one fresh process running `bench.pcdarts`' worker (the same
first-order bi-level step as the search-cost table). Writes docs/img/search_scaling.png
(top: step time, bottom: peak memory) and a table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from bench import common

NAME = "search_scaling"
PLOT = common.IMG / "search_scaling.png"
BASE = {"layers": 3, "width": 8, "size": (64, 128)}
GRID = {"layers": [2, 3, 4, 6], "width": [4, 8, 16, 24], "size": [(32, 64), (64, 128), (96, 192), (128, 256)]}
QUICK_GRID = {"layers": [1, 2], "width": [4, 8], "size": [(32, 64), (48, 96)]}
LABEL = {"layers": "depth L (search_layers)", "width": "base width B", "size": "image pixels (H x W)"}


def spec_for(factor: str, value: Any, rsp: bool, steps: int, warmup: int, batch: int) -> dict[str, Any]:
    """The `bench.pcdarts` worker spec of one point (BASE with `factor` set to `value`)."""
    p = {**BASE, factor: value}
    return {"model": "tiny", "rsp": rsp, "pc_k": 0, "second_order": False, "steps": steps, "warmup": warmup,
            "batch": batch, "crop": list(p["size"]), "device": "cpu",
            "overrides": [f"model.search_layers={p['layers']}", f"model.base_width={p['width']}"]}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (factor, value, rsp): step time, memory, params."""
    grid = QUICK_GRID if args.quick else GRID
    rows = []
    for factor, values in grid.items():
        for value in values:
            for rsp in (True, False):
                spec = spec_for(factor, value, rsp, args.steps, args.warmup, args.batch)
                res = common.run_worker("bench.pcdarts", spec, inprocess=args.quick)
                rows.append({"factor": factor, "value": value, "rsp": rsp, **{k: res[k] for k in ("step_s", "memory_mib", "params_m")}})
    return rows


def x_of(row: dict[str, Any]) -> float:
    """The plotted x value (pixels for the image size)."""
    v = row["value"]
    return float(v[0] * v[1]) if row["factor"] == "size" else float(v)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """2 x 3 panels: step time / memory vs each factor, RSP on and off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for col, factor in enumerate(GRID):
        for rsp, style in ((True, "o-"), (False, "s--")):
            pts = sorted((x_of(r), r["step_s"], r["memory_mib"]) for r in rows if r["factor"] == factor and r["rsp"] == rsp)
            if not pts:
                continue
            xs, ts, ms = zip(*pts)
            axes[0, col].plot(xs, ts, style, label=f"RSP {'on' if rsp else 'off'}")
            axes[1, col].plot(xs, ms, style, label=f"RSP {'on' if rsp else 'off'}")
        axes[0, col].set_title(f"vs {LABEL[factor]}")
        axes[1, col].set_xlabel(LABEL[factor])
    axes[0, 0].set_ylabel("step time (s)")
    axes[1, 0].set_ylabel("peak RSS growth (MiB)")
    axes[0, 0].legend()
    fig.suptitle(f"Stage-1 search step (first order), tiny preset around L={BASE['layers']}, B={BASE['width']}, "
                 f"{BASE['size'][0]}x{BASE['size'][1]}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a picture
    return path


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table, RSP on and off side by side."""
    by = {(r["factor"], str(r["value"]), r["rsp"]): r for r in rows}
    out = []
    for factor, value, rsp in by:
        if not rsp or (factor, value, False) not in by:
            continue
        on, off = by[(factor, value, True)], by[(factor, value, False)]
        shown = "x".join(map(str, hw(on["value"]))) if factor == "size" else value
        out.append([LABEL[factor], shown, f"{on['step_s']:.3f}", f"{off['step_s']:.3f}", f"{on['step_s'] / off['step_s']:.2f}",
                    f"{on['memory_mib']:.0f}", f"{off['memory_mib']:.0f}", f"{on['memory_mib'] / max(off['memory_mib'], 1e-9):.2f}"])
    return common.md_table(["factor", "value", "step RSP on (s)", "step RSP off (s)", "time on/off",
                            "mem on (MiB)", "mem off (MiB)", "mem on/off"], out)


def hw(v: Any) -> list[int]:
    """An image size as [H, W] (tuples become lists after the JSON round trip)."""
    return [int(i) for i in v]


def section(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    return "\n".join([
        "## Search step scaling (stage 1): depth, width, image size",
        "",
        common.device_line(threads=1),
        f"Command: `{command}`",
        "",
        f"First-order bi-level step of the stage-1 `CellSupernet`, batch {args.batch}, around L = {BASE['layers']},",
        f"B = {BASE['width']}, {BASE['size'][0]}x{BASE['size'][1]}; median of {args.steps} steps after {args.warmup} warm-up, one",
        "process per point, one repeat (points are noisy on a shared machine; the trends are not).",
        "Memory = growth of the process's peak RSS during the steps.",
        "",
        f"![search scaling](img/{PLOT.name})",
        "",
        table(rows),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, run the grid, plot, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--quick", action="store_true", help="2 points per factor at batch 1, in-process (seconds)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.warmup, args.batch = 1, 0, 1
    rows = run(args)
    plot(rows, args.plot)
    print(table(rows))
    print(f"plot: {args.plot}")
    if args.write:
        common.write_section(args.write, NAME, section(rows, args, common.command_line("bench.scaling", argv)))
    return rows


if __name__ == "__main__":
    main()
