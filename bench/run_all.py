"""`make bench`: every benchmark in one run, results into docs/benchmarks.md, plots into docs/img/.

    python -m bench.run_all [--doc docs/benchmarks.md] [--camvid-root DIR] [--quick] [--only NAME ...]

With CUDA it adds the paper-preset search cost and fills the GPU throughput rows; without, those
rows say "not run (no GPU)". The CamVid rows (loader throughput, rspnet vs a library baseline)
need `--camvid-root` and are skipped without it. Each benchmark writes its own section (replaced on
a rerun); this script adds a header (device, date, command, load average) and the target check.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import common
from rspnet.utils.io import atomic_write_text


def steps(doc: Path, quick: bool, cuda: bool, camvid: Path | None) -> dict[str, Callable[[], Any]]:
    """Benchmark name -> call (each writes its section into `doc`)."""
    from bench import camvid_baseline, camvid_speed, derived, lut_check, profile_search, runs, search, throughput

    w = ["--write", str(doc), *(["--quick"] if quick else [])]
    root = ["--camvid-root", str(camvid)] if camvid else []
    out: dict[str, Callable[[], Any]] = {
        "search_cost": lambda: search.main(
            ["--models", "tiny", "small", *(["paper"] if cuda and not quick else []), *w]
        ),
        "search_scaling": lambda: search.main(["--scaling", "--plot", str(doc.parent / "img" / search.PLOT.name), *w]),
        "macro_cost": lambda: search.main(["--macro", *w]),
        "search_profile_tiny": lambda: profile_search.main(w),
        "search_profile_stages": lambda: profile_search.main(["--stages", *w]),
        "derived_cost": lambda: derived.main(w),
        "train_options": lambda: derived.main(["--train-options", *w]),
        "data_throughput": lambda: throughput.main(["--data", *root, *w]),
        "infer_throughput": lambda: throughput.main(["--infer", *w]),
    }
    if not quick:  # minutes of real CLI runs; their smoke runs are tests of their own (tests/bench)
        out |= {
            "demo_stage1_profile": lambda: profile_search.main(["--epoch", *w]),
            "busy": lambda: runs.main(["--epochs", *w]),
            "busy_threads.intra_op=2": lambda: runs.main(["--epochs", "--reps", "2", *w, "threads.intra_op=2"]),
            "demo": lambda: runs.main(["--demo", *w]),
            "demo_busy": lambda: runs.main(["--demo", "--busy", *w]),
            "lut_check": lambda: lut_check.main(w),
            "camvid_speed": lambda: camvid_speed.main(w),
        }
        if camvid:
            out["camvid_baseline"] = lambda: camvid_baseline.main(
                ["--root", str(camvid), "--search-epochs", "2", "--train-epochs", "10", "--same-time", *w]
            )
    return out


# RSP on / off search step, (wall time, memory) goals: issue 16 states them at the small preset, issue 9 elsewhere
RSP_GOALS = {"small": (0.5, 0.35), "default": (0.6, 0.5)}


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """'met' / 'missed' / 'not run' for one target."""
    if value is None:
        return "not run"
    return "met" if (value >= target if higher_is_better else value <= target) else "missed"


def targets(results: dict[str, Any]) -> list[list[str]]:
    """The issue-9 and issue-16 targets as rows (target, goal, measured, verdict, from)."""
    rows: list[list[str]] = []

    def add(name: str, value: float | None, target: float, higher: bool, where: str) -> None:
        shown = "-" if value is None else f"{value:.2f}"
        rows.append([name, f"{'>=' if higher else '<='} {target}", shown, verdict(value, target, higher), where])

    cost = results.get("search_cost") or {}
    for model in dict.fromkeys(m for m, _ in cost):
        on, off = cost.get((model, "RSP on"), {}), cost.get((model, "RSP off"), {})
        time_goal, memory_goal = RSP_GOALS.get(model, RSP_GOALS["default"])
        if "step_s" in on and "step_s" in off:
            add(
                f"RSP search wall time / RSP off ({model})",
                on["step_s"] / off["step_s"],
                time_goal,
                False,
                "search_cost",
            )
            add(
                f"RSP search memory / RSP off ({model})",
                on["memory_mib"] / max(off["memory_mib"], 1e-9),
                memory_goal,
                False,
                "search_cost",
            )
    derived = {r["label"]: r for r in results.get("derived_cost") or []}
    ref, paper = derived.get("HRNetV2-W48 + FCN head"), derived.get("RSPNet paper, RSP on")
    if ref and paper:
        add("RSP paper net params / HRNetV2-W48", paper["params_m"] / ref["params_m"], 0.3, False, "derived_cost")
        gpu = paper["gpu_ips"] / ref["gpu_ips"] if paper.get("gpu_ips") and ref.get("gpu_ips") else None
        add("RSP paper net GPU images/s / HRNetV2-W48", gpu, 1.5, True, "derived_cost (needs a GPU)")
    by_ds: dict[str, float] = {}
    for r in results.get("data_throughput") or []:
        if "ratio" in r:
            by_ds[r["dataset"]] = max(by_ds.get(r["dataset"], 0.0), r["ratio"])
    for ds, ratio in by_ds.items():
        add(f"loader / train step rate, {ds} (best worker count)", ratio, 2.0, True, "data_throughput")
    stages = results.get("search_profile_stages")
    if stages:  # issue 16
        add(
            "demo macro-search step / cell-search step (CPU)",
            stages[0]["total_ms"] / stages[1]["total_ms"],
            1.5,
            False,
            "search_profile_stages",
        )
    for workload, arms in (results.get("busy") or {}).items():
        if arms.get("idle") and arms.get("busy"):
            ratio = common.median([r["wall_s"] for r in arms["busy"]]) / common.median(
                [r["wall_s"] for r in arms["idle"]]
            )
            add(f"demo {workload} epoch wall: beside a busy core / idle", ratio, 2.2, False, "busy")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks in order; a failing one is reported and the rest still run."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc", type=Path, default=common.DOC)
    ap.add_argument(
        "--camvid-root", type=Path, default=None, help="CamVid (SegNet layout); absent = CamVid rows skipped"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: every benchmark's --quick mode, no CLI runs")
    ap.add_argument("--only", nargs="+", default=None, help="run just these benchmarks (section names)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = common.device_info()
    results: dict[str, Any] = {}
    ran: dict[str, float] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    for name, call in steps(args.doc, args.quick, info["gpu"] is not None, args.camvid_root).items():
        if args.only and name not in args.only:
            skipped.append(name)
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = call()
            ran[name] = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - one broken benchmark must not lose the others' results
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            print(f"!! {name} failed: {failed[name]}", file=sys.stderr)
    rows = targets(results)
    table = common.md_table(["target", "goal", "measured", "verdict", "from"], rows)
    print(table)
    lines = [
        "## Benchmark run (`make bench`)",
        "",
        common.device_line(info, threads=1),
        f"Command: `{common.command_line('bench.run_all', argv)}`",
        "",
        "Sections (re)written by this run: " + ", ".join(f"{k} ({v:.0f} s)" for k, v in ran.items()) + ".",
    ]
    if skipped:
        lines += [
            "",
            "Not rerun (`--only`; their sections keep their own date and command): " + ", ".join(skipped) + ".",
        ]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
    if not info["gpu"]:
        lines += [
            "",
            "No GPU in this run: the paper-preset search cost and the GPU throughput rows are not run; on a",
            "CUDA machine `make bench` runs them (same command).",
        ]
    common.write_section(args.doc, "run_all", "\n".join([*lines, "", "### Targets (issues 9 and 16)", "", table]))
    first(args.doc, "run_all")
    return {"results": results, "targets": rows, "failed": failed}


def first(doc: Path, name: str) -> None:
    """Move `name`'s section right after the title, so the doc opens with the device and targets."""
    start, end = common.markers(name)
    text = doc.read_text()
    i, j = text.find(start), text.find(end) + len(end)
    block, rest = text[i:j], (text[:i] + text[j:]).strip("\n")
    title, _, body = rest.partition("\n")
    atomic_write_text(doc, f"{title}\n\n{block}\n\n{body.strip()}\n")


if __name__ == "__main__":
    main()
