"""Does the search matter? Searched vs random architectures on CamVid, every ablation an arm (issue 13).

    python -m experiments.camvid_study --root ../shared/data/camvid --out outputs/camvid_study
    python -m experiments.camvid_study --debug --out outputs/camvid_study_debug   # synthetic, minutes
    python -m experiments.results --study outputs/camvid_study --out docs/results.md

One command, resumable: every step (search, sampling, training, evaluation) is a job with its
own folder under OUT and a `done` marker holding its wall and CPU time; re-running skips done
jobs, and a killed search/training job resumes from its `last.ckpt`. A failed job is recorded
(`failed`), jobs that depend on it are skipped, the others still run. Every arm is trained with
the identical recipe (`experiment=camvid_study`); validation never runs during search or
training (`trainer.limit_val_batches=0`), the last checkpoint is evaluated once on CamVid val.
Sizing: experiments/README.md ("CamVid study").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONV3X3 = {
    "format": "rspnet.genotype/1",
    "primitives": None,
    "rsp": True,
    "provenance": "preset",
    "edges": [{"src": s, "dst": d, "op": "conv_3x3", "weights": []} for s, d in ((0, 1), (0, 2), (1, 2))],
    "search": {"source": "fixed all-conv_3x3 cell (ablation: no cell search)"},
}
DEBUG = [
    "debug=tiny",  # synthetic data, 8 train / 4 val images at 32x64, batches of 4, no logger
    "dataset.resize_long=null",  # the study's 160 would upscale the 32x64 images
    "logger=csv",  # the study's tables read the csv logs
    "model.search_layers=1",
    "model.layers=2",
    "trainer.limit_train_batches=2",
]


@dataclass
class Job:
    """One step: `kind` rspnet (a stage run) or write (a Python callable); deps are job names."""

    name: str
    kind: str
    args: Callable[[Path], list[str]] | None = None
    deps: list[str] = field(default_factory=list)
    write: Callable[[Path], None] | None = None


@dataclass
class Arm:
    """A trained architecture (one row of the results): its train/eval job folder per training seed."""

    name: str
    group: str  # searched | random | ablation | baseline
    label: str
    runs: dict[int, str] = field(default_factory=dict)  # training seed -> train job name
    search_jobs: list[str] = field(default_factory=list)


def plan(args: argparse.Namespace) -> tuple[list[Job], list[Arm]]:
    """The study's jobs in dependency order, and its arms."""
    out = args.out
    base = ["experiment=camvid_study", *args.overrides]
    base += DEBUG if args.debug else [f"dataset.root={Path(args.root).resolve()}"]
    jobs: list[Job] = []
    arms: list[Arm] = []

    def stage(name: str, stage_name: str, deps: list[str], extra: Callable[[], list[str]] | list[str]) -> None:
        more = extra if callable(extra) else (lambda e=extra: e)
        jobs.append(Job(name, "rspnet", lambda d, s=stage_name, m=more: [*base, f"stage={stage_name}", *m()], deps))

    def artifact(job: str, file: str) -> str:
        return str(out / job / file)

    for s in range(args.search_seeds):
        stage(f"search/cell_s{s}", "cell_search", [], [f"seed={s}", f"trainer.max_epochs={args.search_epochs}"])
        stage(
            f"search/macro_s{s}",
            "macro_search",
            [f"search/cell_s{s}"],
            [
                f"seed={s}",
                f"trainer.max_epochs={args.macro_epochs}",
                f"genotype={artifact(f'search/cell_s{s}', 'genotype.json')}",
            ],
        )
    stage(
        "search/macro_beta_s0",
        "macro_search",
        ["search/cell_s0"],
        [
            "seed=0",
            f"trainer.max_epochs={args.macro_epochs}",
            "macro.scoring=beta",
            f"genotype={artifact('search/cell_s0', 'genotype.json')}",
        ],
    )
    jobs.append(Job("arch/conv3x3", "write", write=_write_conv3x3))
    stage(
        "search/macro_conv3x3_s0",
        "macro_search",
        ["arch/conv3x3"],
        ["seed=0", f"trainer.max_epochs={args.macro_epochs}", f"genotype={artifact('arch/conv3x3', 'genotype.json')}"],
    )
    jobs.append(
        Job(
            "arch/searched_s0",
            "write",
            deps=["search/cell_s0", "search/macro_s0"],
            write=lambda d: _copy_arch(out / "search/cell_s0/genotype.json", out / "search/macro_s0/macro.json", d),
        )
    )
    for i in range(args.random):
        stage(
            f"arch/random_r{i}",
            "sample_arch",
            ["arch/searched_s0"],
            [
                f"seed={1000 + i}",
                f"sample.param_match={out / 'arch/searched_s0'}",
                f"sample.tolerance={args.tolerance}",
            ],
        )

    def arm(name: str, group: str, label: str, seeds: int, deps: list[str], extra: list[str]) -> None:
        a = Arm(name, group, label, search_jobs=[d for d in deps if d.startswith("search/")])
        for t in range(seeds):
            run = f"train/{name}_t{t}"
            stage(run, "train", deps, [f"seed={t}", f"trainer.max_epochs={args.train_epochs}", *extra])
            stage(f"{run}/eval", "eval", [run], [f"ckpt={artifact(run, 'checkpoints/last.ckpt')}", "split=val"])
            a.runs[t] = run
        arms.append(a)

    def searched(cell: str, macro: str | None) -> list[str]:
        return [f"genotype={artifact(cell, 'genotype.json')}"] + (
            [f"macro_arch={artifact(macro, 'macro.json')}"] if macro else []
        )

    for s in range(args.search_seeds):
        arm(
            f"searched_s{s}",
            "searched",
            f"searched (cell + macro search, search seed {s})",
            args.train_seeds,
            [f"search/cell_s{s}", f"search/macro_s{s}"],
            searched(f"search/cell_s{s}", f"search/macro_s{s}"),
        )
    for i in range(args.random):
        arm(
            f"random_r{i}",
            "random",
            f"random #{i} (param-matched)",
            args.train_seeds if i < args.random_seeded else 1,
            [f"arch/random_r{i}"],
            searched(f"arch/random_r{i}", f"arch/random_r{i}"),
        )
    arm(
        "abl_default_macro",
        "ablation",
        "searched cell + default_macro (no macro search)",
        1,
        ["search/cell_s0"],
        searched("search/cell_s0", None),
    )
    arm(
        "abl_conv3x3_cell",
        "ablation",
        "all-conv_3x3 cell + searched macro (no cell search)",
        1,
        ["arch/conv3x3", "search/macro_conv3x3_s0"],
        searched("arch/conv3x3", "search/macro_conv3x3_s0"),
    )
    arm(
        "abl_rsp_off",
        "ablation",
        "searched architecture, RSP off",
        1,
        ["search/cell_s0", "search/macro_s0"],
        [*searched("search/cell_s0", "search/macro_s0"), "rsp=off"],
    )
    arm(
        "abl_macro_beta",
        "ablation",
        "searched cell + macro searched with beta only (no CAM)",
        1,
        ["search/cell_s0", "search/macro_beta_s0"],
        searched("search/cell_s0", "search/macro_beta_s0"),
    )
    for variant in args.variant:
        name, extra = named_overrides(variant, f"camvid_study: error: --variant {variant}")
        stage(f"search/cell_{name}", "cell_search", [], ["seed=0", f"trainer.max_epochs={args.search_epochs}", *extra])
        stage(
            f"search/macro_{name}",
            "macro_search",
            [f"search/cell_{name}"],
            [
                "seed=0",
                f"trainer.max_epochs={args.macro_epochs}",
                f"genotype={artifact(f'search/cell_{name}', 'genotype.json')}",
                *extra,
            ],
        )
        arm(
            f"variant_{name}",
            "variant",
            f"searched with {' '.join(extra)}",
            1,
            [f"search/cell_{name}", f"search/macro_{name}"],
            searched(f"search/cell_{name}", f"search/macro_{name}"),
        )
    # the library baseline: the net group's MONAI BasicUNet, trained and evaluated like every arm
    arm("baseline_unet", "baseline", "MONAI BasicUNet (library baseline)", args.baseline_seeds, [], ["net=monai_unet"])
    for name in ("searched_s0", "random_r0"):  # a few prediction overlays for the results page
        run = next(a for a in arms if a.name == name).runs[0]
        stage(
            f"{run}/predict",
            "predict",
            [run],
            [
                f"ckpt={artifact(run, 'checkpoints/last.ckpt')}",
                "split=val",
                f"predict.limit={args.overlays}",
                "predict.label_ids=false",
            ],
        )
    return jobs, arms


def named_overrides(spec: str, where: str) -> tuple[str, list[str]]:
    """`NAME=OVERRIDE[,OVERRIDE...]` -> (name, overrides); otherwise one error line starting with `where`."""
    name, _, rest = spec.partition("=")
    overrides = [o for o in rest.split(",") if o]
    if not name.isidentifier() or not overrides:
        raise SystemExit(f"{where}: use NAME=OVERRIDE[,OVERRIDE...]")
    return name, overrides


def _write_conv3x3(d: Path) -> None:
    from rspnet.genotype import Genotype
    from rspnet.search_space.ops import PRIMITIVES

    Genotype.from_dict(CONV3X3 | {"primitives": list(PRIMITIVES)}, "conv3x3").save(d / "genotype.json")


def _copy_arch(genotype: Path, macro: Path, d: Path) -> None:
    shutil.copyfile(genotype, d / "genotype.json")
    shutil.copyfile(macro, d / "macro.json")


def command(job: Job, d: Path) -> list[str]:
    """The subprocess command of a job (resuming from last.ckpt when a killed run left one)."""
    assert job.args is not None
    argv = job.args(d)
    resume = ["ckpt_path=last"] if (d / "checkpoints" / "last.ckpt").is_file() else []
    return [sys.executable, "-m", "rspnet.cli", *argv, *resume, f"paths.output_dir={d}", "print_config=false"]


def run_job(job: Job, d: Path) -> dict[str, Any]:
    """Run one job; returns its wall time and the CPU time of its process tree (user + system).

    The child is reaped with `os.wait4`, so its CPU time (loader workers included: they are its own
    children, reaped by it) is its own even when other jobs run beside it (`--jobs 2`)."""
    d.mkdir(parents=True, exist_ok=True)
    t0, cpu = time.perf_counter(), time.thread_time()
    if job.kind == "write":
        assert job.write is not None
        job.write(d)
        argv: list[str] = []
        cpu = time.thread_time() - cpu
    else:
        argv = command(job, d)
        with open(d / "job.log", "a") as log:
            proc = subprocess.Popen(
                argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"}
            )
            _, wait_status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)
        cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(cpu, 2),
        "command": argv[1:],
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def run_study(
    jobs: list[Job], out: Path, runner: Callable[[Job, Path], dict] = run_job, workers: int = 1
) -> dict[str, list[str]]:
    """Run every job not yet `done`, deps first, up to `workers` at once (in plan order); a failure skips its
    dependents. Returns what happened."""
    status: dict[str, list[str]] = {"skipped_done": [], "ran": [], "failed": [], "blocked": []}
    bad: set[str] = set()
    todo: list[Job] = []
    for job in jobs:
        if (out / job.name / "done").is_file():
            status["skipped_done"].append(job.name)
        else:
            todo.append(job)
    running: dict[Future, Job] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while todo or running:
            for job in list(todo):  # start what is ready, in plan order, while there is room
                if any(dep in bad for dep in job.deps):
                    todo.remove(job)
                    bad.add(job.name)
                    status["blocked"].append(job.name)
                elif len(running) < max(1, workers) and all((out / dep / "done").is_file() for dep in job.deps):
                    todo.remove(job)
                    print(f"[study] {job.name} ...", flush=True)
                    (out / job.name).mkdir(parents=True, exist_ok=True)
                    running[pool.submit(runner, job, out / job.name)] = job
            if not running:  # nothing can start: what is left waits on jobs that did not finish
                for job in todo:
                    bad.add(job.name)
                    status["blocked"].append(job.name)
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: jobs.index(running[f])):
                _record(running.pop(future), future, out, status, bad)
    return status


def _record(job: Job, future: Future, out: Path, status: dict[str, list[str]], bad: set[str]) -> None:
    """Write a finished job's `done` (wall and CPU time) or `failed` marker."""
    d = out / job.name
    try:
        record = future.result()
    except (subprocess.CalledProcessError, OSError, ValueError) as e:
        bad.add(job.name)
        status["failed"].append(job.name)
        (d / "failed").write_text(f"{type(e).__name__}: {e}\nsee {d / 'job.log'}\n")
        print(f"[study] {job.name} FAILED ({e}); see {d / 'job.log'}", flush=True)
        return
    (d / "failed").unlink(missing_ok=True)
    (d / "done").write_text(json.dumps(record, indent=2) + "\n")
    status["ran"].append(job.name)
    print(f"[study] {job.name} done in {record['wall_s']:.0f} s (CPU {record['cpu_s']:.0f} s)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/data/camvid", help="CamVid root (SegNet layout)")
    ap.add_argument("--out", type=Path, default=Path("outputs/camvid_study"))
    ap.add_argument(
        "--debug", action="store_true", help="tiny dry run on synthetic data (1 epoch, 2 batches, 2 random arms)"
    )
    ap.add_argument("--search-epochs", type=int, default=15)
    ap.add_argument("--macro-epochs", type=int, default=15)
    ap.add_argument("--train-epochs", type=int, default=30)
    ap.add_argument("--search-seeds", type=int, default=2)
    ap.add_argument(
        "--train-seeds", type=int, default=2, help="training seeds of the searched arms and the first random ones"
    )
    ap.add_argument("--random", type=int, default=8, help="random (param-matched) architectures")
    ap.add_argument("--random-seeded", type=int, default=4, help="how many random arms get --train-seeds seeds")
    ap.add_argument("--baseline-seeds", type=int, default=1)
    ap.add_argument(
        "--tolerance", type=float, default=0.2, help="param match: +- fraction of the searched net's params"
    )
    ap.add_argument("--overlays", type=int, default=3, help="prediction overlays per pictured arm")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDE[,OVERRIDE...]",
        help="another search recipe as an extra arm (cell + macro search, seed 0, one training seed), "
        "e.g. lr03=search.arch_adam_lr=0.03",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="jobs run at once (each uses 1 torch thread + 1 loader "
        "worker; 2 on a 2-core machine roughly halves the study's wall time, and inflates each run's)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the plan (and what is done) and exit")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides for every job")
    args = ap.parse_args(argv)
    if args.debug:
        args.search_epochs = args.macro_epochs = args.train_epochs = 1
        args.search_seeds, args.train_seeds, args.random, args.random_seeded, args.overlays = 1, 1, 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.debug and not Path(args.root).is_dir():
        print(
            f"camvid_study: error: --root {args.root}: no such folder; pass the CamVid (SegNet layout) root",
            file=sys.stderr,
        )
        return 2
    jobs, arms = plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "debug": args.debug,
        "command": "python -m experiments.camvid_study " + " ".join(argv if argv is not None else sys.argv[1:]),
        "epochs": {"cell_search": args.search_epochs, "macro_search": args.macro_epochs, "train": args.train_epochs},
        "jobs": [{"name": j.name, "kind": j.kind, "deps": j.deps} for j in jobs],
        "arms": [
            {"name": a.name, "group": a.group, "label": a.label, "runs": a.runs, "search_jobs": a.search_jobs}
            for a in arms
        ],
    }
    (args.out / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.dry_run:
        for j in jobs:
            print(("done    " if (args.out / j.name / "done").is_file() else "todo    ") + j.name)
        return 0
    status = run_study(jobs, args.out, workers=args.jobs)
    print(
        f"[study] ran {len(status['ran'])}, already done {len(status['skipped_done'])}, failed {status['failed']}, "
        f"blocked {len(status['blocked'])}. Results: python -m experiments.results --study {args.out} --out docs/results.md"
    )
    return 1 if status["failed"] or status["blocked"] else 0


if __name__ == "__main__":
    sys.exit(main())
