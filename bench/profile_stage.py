"""Where one epoch of the demo's cell search (`stage=cell_search model=tiny`) spends its time.

    .venv/bin/python -m bench.profile_stage [--epochs 1] [--write]

Runs `run_cell_search` as `make demo` configures it (synthetic data, tiny preset, csv logger)
under cProfile in this fresh process, imports included, and splits the wall time into the
parts that matter: imports of the data stack, the bi-level training steps, validation, the
epoch-end pictures (`export_artifacts`) and everything else (Trainer set-up, checkpoints).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from typing import Any

import torch

from bench import common

NAME = "demo_stage1_profile"
# part -> (file suffix, function name) whose cumulative time is the part's
PARTS = {
    "import rspnet.data (Lightning, albumentations, cv2)": ("rspnet/data/__init__.py", "<module>"),
    "bi-level training steps": ("rspnet/lit/search_module.py", "training_step"),
    "validation steps": ("rspnet/lit/search_module.py", "validation_step"),
    "epoch-end pictures (export_artifacts)": ("rspnet/lit/search_module.py", "export_artifacts"),
}


def cumulative(stats: pstats.Stats, suffix: str, func: str) -> tuple[float, int]:
    """(cumulative seconds, calls) of the functions named `func` in files ending with `suffix`."""
    total, calls = 0.0, 0
    for (filename, _, name), (_, nc, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == func and filename.endswith(suffix):
            total, calls = total + ct, calls + nc
    return total, calls


def profile(epochs: int) -> dict[str, Any]:
    """Wall/CPU seconds of the whole stage and of each part."""
    prof = cProfile.Profile()
    out = tempfile.mkdtemp(prefix="profile_stage_")
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    import rspnet.data  # noqa: F401  (counted: the demo pays it too)
    from rspnet.stages.search import run_cell_search

    cfg = common.compose_cfg("stage=cell_search", "model=tiny", "dataset=synthetic", "logger=csv",
                             f"trainer.max_epochs={epochs}", f"paths.output_dir={out}")
    run_cell_search(cfg)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = pstats.Stats(prof)
    parts = {p: cumulative(stats, *key) for p, key in PARTS.items()}
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts, "epochs": epochs}


def table(res: dict[str, Any]) -> str:
    """Seconds and share of the stage's wall time per part."""
    rows = [[p, n, f"{s:.2f}", f"{100 * s / res['wall_s']:.0f}%"] for p, (s, n) in res["parts"].items()]
    rest = res["wall_s"] - sum(s for s, _ in res["parts"].values())
    rows.append(["everything else (Trainer set-up, checkpoints, logging)", "-", f"{rest:.2f}", f"{100 * rest / res['wall_s']:.0f}%"])
    rows.append(["**whole stage**", "-", f"{res['wall_s']:.2f} (CPU {res['cpu_s']:.2f})", "100%"])
    return common.md_table(["part", "calls", "seconds (wall, under cProfile)", "share"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Profile the stage, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = profile(args.epochs)
    print(table(res))
    if args.write:
        body = "\n".join([
            f"## Demo cell search: where {args.epochs} epoch(s) of `stage=cell_search model=tiny` go", "",
            common.device_line(threads=1), f"Command: `{common.command_line('bench.profile_stage', argv)}`", "",
            "One fresh process, cProfile on (which adds some overhead to Python-heavy parts), imports",
            "included; synthetic data (48 train images -> 6 bi-level steps of batch 4 per epoch, 16 val",
            "images), csv logger, as `make demo` runs stage 1. Wall time, so it includes waiting for",
            "a core on a shared machine (the CPU time of the whole stage is given too).", "", table(res)])
        common.write_section(args.write, NAME, body)
    return res


if __name__ == "__main__":
    main()
