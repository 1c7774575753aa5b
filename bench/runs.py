"""Wall clock of real CLI runs: `make demo`, and demo epochs idle vs beside a busy core.

    python -m bench.runs --demo [--write]                           # `rspnet experiment=demo`, seconds per stage
    python -m bench.runs --demo --busy [--pin CORE] [--write]       # the same idle, then beside a busy loop
    python -m bench.runs --epochs [--reps 3] [--pin CORE] [--write] [OVERRIDE ...]

--demo runs the `make demo` command in a fresh process into a temporary folder and reads its
pipeline.json. --epochs runs one epoch of `stage=macro_search` and of `stage=train` at the demo
preset (genotype experiments/genotypes/paper_like.json) through `rspnet.stages.run_stage`, each in a fresh
process with the thread policy a user gets, idle and beside a CPU-bound `python -c "while True:
pass"` process, arms alternated; median wall time first, CPU time (threads + loader workers)
beside. On C usable cores a fair share is busy / idle <= C / (C - 1). Hydra overrides go to every
run, e.g. `threads.intra_op=2` (written to its own section).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bench import common

GENOTYPE = str(common.REPO / "experiments" / "genotypes" / "paper_like.json")
WORKLOADS = {"macro_search": ["stage=macro_search"], "train": ["stage=train"]}
QUICK = [
    "dataset.num_train=8",
    "dataset.num_val=4",
    "dataset.image_size=[32,64]",
    "dataset.crop_size=[32,64]",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
]


@contextmanager
def busy_loop(pin: int | None = None) -> Iterator[subprocess.Popen]:
    """A CPU-bound neighbour process for the duration of the block (pinned to core `pin` if given)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if pin is not None:
            os.sched_setaffinity(proc.pid, {pin})
        time.sleep(0.2)  # let it start spinning before the timed run does
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run_demo(overrides: list[str]) -> tuple[dict[str, Any], float]:
    """(pipeline.json, process wall seconds) of one `rspnet experiment=demo` run; exits on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "rspnet.cli",
            "experiment=demo",
            f"paths.output_dir={tmp}",
            "print_config=false",
            "trainer.enable_progress_bar=false",
            *overrides,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        return json.loads((Path(tmp) / "pipeline.json").read_text()), wall


NEIGHBOUR = 'one `python -c "while True: pass"` process'


def demo(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """(section name, title, text) of --demo, with --busy idle vs beside a busy loop."""
    if not args.busy:
        summary, wall = run_demo(args.overrides)
        rows = [*summary["seconds"].items(), ("total (process wall time)", round(wall, 1))]
        return "demo", "`make demo` (experiment=demo)", [
            "Runs `rspnet experiment=demo` as `make demo` does, without the install step.", "",
            common.md_table("stage | seconds", rows), "", f"Final synthetic val mIoU: {100 * summary['miou']:.2f} % "
            f"(19 classes; chance ≈ 5 %), derived network {summary['params'] / 1e6:.3f} M params."]  # fmt: skip
    arms = {}
    for arm in ("idle", "busy"):
        with busy_loop(args.pin) if arm == "busy" else nullcontext():
            arms[arm] = run_demo(args.overrides)
    (idle, idle_wall), (busy, busy_wall) = arms["idle"], arms["busy"]
    seconds = [(stage, secs, busy["seconds"][stage]) for stage, secs in idle["seconds"].items()]
    rows = [[stage, f"{a:.1f}", f"{b:.1f}", f"{b / max(a, 1e-9):.2f}x"] for stage, a, b in seconds]
    rows.append(
        ["total (process wall time)", f"{idle_wall:.1f}", f"{busy_wall:.1f}", f"**{busy_wall / idle_wall:.2f}x**"]
    )
    return "demo_busy", "`make demo` beside a busy core", [
        f"`rspnet experiment=demo` idle, then beside {NEIGHBOUR} ({pinned(args.pin)}).", "",
        common.md_table("stage | wall idle (s) | wall busy (s) | busy / idle", rows), "",
        f"Final synthetic val mIoU: {100 * idle['miou']:.2f} % idle, {100 * busy['miou']:.2f} % busy."]  # fmt: skip


def pinned(pin: int | None) -> str:
    """How the busy loop ran, for the doc."""
    return f"pinned to core {pin}" if pin is not None else "not pinned"


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Compose the demo config for one workload and time `rspnet.stages.run_stage` on it (wall, CPU incl. workers)."""
    import torch

    from rspnet.stages import get_stage, run_stage

    with tempfile.TemporaryDirectory() as tmp:
        demo = ["experiment=demo", "logger=csv", f"genotype={GENOTYPE}", "trainer.max_epochs=1"]
        cfg = common.compose_cfg(
            *demo, "trainer.enable_progress_bar=false", f"paths.output_dir={tmp}", *spec["overrides"]
        )
        get_stage(str(cfg.stage.name))  # its imports are not part of the epoch
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0, c0 = time.perf_counter(), time.process_time()
        run_stage(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)  # loader workers
    return {"wall_s": wall, "cpu_s": cpu, "threads": torch.get_num_threads()}


def measure(reps: int, pin: int | None, overrides: Sequence[str], inprocess: bool) -> dict[str, dict[str, list[dict]]]:
    """{workload: {"idle"|"busy": [run, ...]}}, the two arms alternated (idle first on even reps)."""
    res: dict[str, dict[str, list[dict]]] = {w: {"idle": [], "busy": []} for w in WORKLOADS}
    for rep in range(reps):
        for wl, extra in WORKLOADS.items():
            for arm in ("idle", "busy") if rep % 2 == 0 else ("busy", "idle"):
                with busy_loop(pin) if arm == "busy" else nullcontext():
                    spec = {"overrides": [*extra, *overrides]}
                    res[wl][arm].append(common.run_worker("bench.runs", spec, inprocess=inprocess))
    return res


def epochs(args: argparse.Namespace) -> tuple[str, str, list[str], dict[str, dict[str, list[dict]]]]:
    """(section name, title, text, runs) of --epochs."""
    res = measure(args.reps, args.pin, [*(QUICK if args.quick else []), *args.overrides], inprocess=args.quick)
    rows = []
    for wl, arms in res.items():
        (iw, ic), (bw, bc) = ([common.median([r[k] for r in arms[a]]) for k in ("wall_s", "cpu_s")] for a in arms)
        rows.append([f"{wl} (1 epoch)", f"{iw:.1f}", f"{bw:.1f}", f"**{bw / iw:.2f}x**", f"{ic:.1f}", f"{bc:.1f}",
                     arms["idle"][0]["threads"]])  # fmt: skip
    name = "_".join(["busy", *(re.sub(r"[^\w.=]+", "_", o) for o in args.overrides)])
    header = "workload | wall idle (s) | wall beside busy loop (s) | wall busy / idle | CPU idle (s) | CPU busy (s)"
    policy = f"the overrides `{' '.join(args.overrides)}`" if args.overrides else "the default thread policy"
    title = "Wall clock beside a busy core (demo macro-search and train epochs)"
    return name, title + (f", {' '.join(args.overrides)}" if args.overrides else ""), [
        f"One epoch of each stage at the demo preset, each run a fresh process with {policy}, idle",
        f"vs beside {NEIGHBOUR} ({pinned(args.pin)}); arms alternated, median of {args.reps} run(s). Fair share on C",
        "cores: busy / idle <= C / (C - 1).", "", common.md_table(header + " | torch threads", rows)], res  # fmt: skip


def main(argv: list[str] | None = None) -> Any:
    """Run --demo or --epochs, print (and optionally write) the section; returns the runs."""
    ap, argv = common.parser(__doc__, argv, worker)
    if ap is None:
        return {}
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. threads.intra_op=2)")
    ap.add_argument("--demo", action="store_true", help="time `make demo` (with --busy: idle vs busy)")
    ap.add_argument("--busy", action="store_true", help="--demo: also beside a busy loop")
    ap.add_argument("--epochs", action="store_true", help="demo macro-search and train epochs, idle vs busy")
    ap.add_argument("--reps", type=int, default=3, help="--epochs: runs per arm and workload (median reported)")
    ap.add_argument("--pin", type=int, default=None, help="pin the busy loop to this core (default: unpinned)")
    ap.add_argument("--quick", action="store_true", help="--epochs: a few batches, in this process (the smoke test)")
    args = common.parse(ap, argv)
    if args.demo == args.epochs:
        ap.error("pass exactly one of --demo, --epochs")
    started = common.device_line()  # before the runs: the load average they start from
    name, title, text, *res = demo(args) if args.demo else epochs(args)
    body = "\n".join([f"## {title}", "", started, f"Command: `{common.command_line('bench.runs', argv)}`", "", *text])
    print(body)
    if args.write:
        common.write_section(args.write, name, body)
    return res[0] if res else body


if __name__ == "__main__":
    main()
