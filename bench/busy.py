"""Wall clock beside a busy neighbour: demo macro-search and train epochs, idle vs one busy core.

    python -m bench.busy [--reps 3] [--pin CORE] [--write] [OVERRIDE ...]

Runs one epoch of `stage=macro_search` and one of `stage=train` at the demo preset
(`experiment=demo`, genotype experiments/genotypes/paper_like.json) through `rspnet.cli.run`,
each in a fresh process with the thread policy a user gets, once idle and once beside a
CPU-bound `python -c "while True: pass"` process (pinned to core CORE with --pin), arms
alternated in one run. Reports median wall time first, process CPU time beside it (this
process's threads plus its loader workers), and the busy/idle wall ratio. On a machine with
C usable cores a fair share is C / (C - 1) of idle, i.e. 2x on 2 cores. Hydra overrides
are passed to every run, e.g. `threads.intra_op=2` to see the pre-policy default on 2 cores
(written to its own section, beside the default run's).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import common

NAME = "busy"
GENOTYPE = str(common.REPO / "experiments" / "genotypes" / "paper_like.json")
WORKLOADS = {"macro_search": ["stage=macro_search"], "train": ["stage=train"]}
# a few batches: what the smoke test runs
QUICK = ["dataset.num_train=8", "dataset.num_val=4", "dataset.image_size=[32,64]", "dataset.crop_size=[32,64]",
         "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]


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


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Compose the demo config for one workload and time `rspnet.cli.run` on it (wall, CPU)."""
    import torch

    from rspnet import cli
    from rspnet.stages import get_stage

    with tempfile.TemporaryDirectory() as tmp:
        cfg = common.compose_cfg("experiment=demo", "logger=csv", f"genotype={GENOTYPE}", "trainer.max_epochs=1",
                                 "trainer.enable_progress_bar=false", f"paths.output_dir={tmp}", *spec["overrides"])
        get_stage(str(cfg.stage.name))  # its imports are not part of the epoch
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0, c0 = time.perf_counter(), time.process_time()
        cli.run(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)  # loader workers
    return {"wall_s": wall, "cpu_s": cpu, "threads": torch.get_num_threads()}


def measure(reps: int, pin: int | None, overrides: Sequence[str], inprocess: bool) -> dict[str, dict[str, list[dict]]]:
    """{workload: {"idle"|"busy": [run, ...]}}, the two arms alternated (idle first on even reps)."""
    res: dict[str, dict[str, list[dict]]] = {w: {"idle": [], "busy": []} for w in WORKLOADS}
    for rep in range(reps):
        for wl, extra in WORKLOADS.items():
            for arm in (("idle", "busy") if rep % 2 == 0 else ("busy", "idle")):
                spec = {"overrides": [*extra, *overrides]}
                if arm == "busy":
                    with busy_loop(pin):
                        res[wl][arm].append(common.run_worker("bench.busy", spec, inprocess=inprocess))
                else:
                    res[wl][arm].append(common.run_worker("bench.busy", spec, inprocess=inprocess))
    return res


def table(res: dict[str, dict[str, list[dict]]]) -> str:
    """One row per workload: wall idle / busy, ratio, CPU idle / busy, torch threads."""
    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows = []
    for wl, arms in res.items():
        idle, busy = med(arms["idle"], "wall_s"), med(arms["busy"], "wall_s")
        rows.append([f"{wl} (1 epoch)", f"{idle:.1f}", f"{busy:.1f}", f"**{busy / idle:.2f}x**",
                     f"{med(arms['idle'], 'cpu_s'):.1f}", f"{med(arms['busy'], 'cpu_s'):.1f}", arms["idle"][0]["threads"]])
    return common.md_table(["workload", "wall idle (s)", "wall beside busy loop (s)", "wall busy / idle",
                            "CPU idle (s)", "CPU busy (s)", "torch threads"], rows)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[dict]]]:
    """Run the arms, print (and optionally write) the section."""
    argv = sys.argv[1:] if argv is None else argv
    if common.worker_main(argv, worker):
        return {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. threads.intra_op=2)")
    ap.add_argument("--reps", type=int, default=3, help="runs per arm and workload (median reported)")
    ap.add_argument("--pin", type=int, default=None, help="pin the busy loop to this core (default: unpinned)")
    ap.add_argument("--quick", action="store_true", help="a few batches, in this process (the smoke test)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    started = common.device_line()
    res = measure(args.reps, args.pin, [*(QUICK if args.quick else []), *args.overrides], inprocess=args.quick)
    pin = f"pinned to core {args.pin}" if args.pin is not None else "not pinned"
    body = "\n".join([
        "## Wall clock beside a busy core (demo macro-search and train epochs)", "", started,
        f"Command: `{common.command_line('bench.busy', argv)}`", "",
        f"One epoch of each stage at the demo preset, each run a fresh process with the default thread policy, "
        f"idle vs beside one `python -c \"while True: pass\"` process ({pin}); arms alternated, median of "
        f"{args.reps} run(s). Wall time is what a user waits for; CPU time (all threads plus loader workers) "
        "is beside it. Fair share on C cores: busy / idle <= C / (C - 1).", "", table(res)])
    print(body)
    if args.write:  # one section per set of overrides, so a before/after pair sits side by side
        common.write_section(args.write, "_".join([NAME, *(re.sub(r"[^\w.=]+", "_", o) for o in args.overrides)]), body)
    return res


if __name__ == "__main__":
    main()
