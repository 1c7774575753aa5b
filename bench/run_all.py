"""`make bench`: every benchmark in one run, results into docs/benchmarks.md, plots into docs/img/.

    .venv/bin/python -m bench.run_all [--doc docs/benchmarks.md] [--quick] [--only NAME ...]

Detects CUDA: with a GPU it adds the paper-preset search cost (batch 2 of 512x1024, bf16)
and fills the GPU throughput rows of the derived-network table; without one those rows say
"not run (no GPU)". Each benchmark writes its own section (replaced on a rerun); this script
adds a header (device, date, command, load average) and the issue-9 target check.
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

NAME = "run_all"


def steps(doc: Path, quick: bool, cuda: bool) -> dict[str, Callable[[], Any]]:
    """Benchmark name -> call (each writes its section into `doc`)."""
    from bench import data_throughput, derived_cost, pcdarts, profile_search, scaling, train_options

    w = ["--write", str(doc)]
    q = ["--quick"] if quick else []
    # the small preset on CPU: batch 2 of 64x128 keeps a step at seconds; on a GPU the paper preset at paper crop
    small = ["--model", "small", "--batch", "2", "--crop", "64", "128", "--steps", "3", "--warmup", "1", "--repeats", "1"]
    paper = ["--model", "paper", "--batch", "2", "--crop", "512", "1024", "--steps", "5", "--warmup", "2", "--repeats", "1"]
    out: dict[str, Callable[[], Any]] = {}
    if not quick:  # the stage-1/2 owners' scripts have no smoke mode; they run in the full benchmark
        from bench import macro_cost, search_cost

        out["search_cost_tiny"] = lambda: search_cost.main(w)
        out["search_cost_small"] = lambda: search_cost.main([*small, *w])
        out["macro_cost"] = lambda: macro_cost.main(w)
    out["search_cost_peers_tiny"] = lambda: pcdarts.main(q + w)
    if not quick:
        out["search_cost_peers_small"] = lambda: pcdarts.main([*small, *w])
    if cuda and not quick:
        out["search_cost_peers_paper"] = lambda: pcdarts.main([*paper, *w])
    if not quick:  # their smoke runs are tests of their own (tests/benchmarks/test_bench_tools.py)
        from bench import profile_stage

        out["search_profile_tiny"] = lambda: profile_search.main(w)
        out["search_profile_stages"] = lambda: profile_search.main(["--stages", *w])
        out["demo_stage1_profile"] = lambda: profile_stage.main(w)
    if not quick:  # minutes of stage runs; its smoke run is tests/benchmarks/test_busy.py
        from bench import busy

        out["busy"] = lambda: busy.main(w)
    out["derived_cost"] = lambda: derived_cost.main(q + w)
    out["train_options"] = lambda: train_options.main(q + w)
    out["data_throughput"] = lambda: data_throughput.main(q + w)
    plot = doc.parent / "img" / scaling.PLOT.name  # the doc links img/<name>: keep the picture beside it
    out["search_scaling"] = lambda: scaling.main([*q, *w, "--plot", str(plot)])
    return out


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """'met' / 'missed' / 'not run' for one target."""
    if value is None:
        return "not run"
    return "met" if (value >= target if higher_is_better else value <= target) else "missed"


def targets(results: dict[str, Any]) -> list[list[str]]:
    """The issue-9 and issue-16 targets as rows (target, measured, verdict) from the benchmarks' return values."""
    rows: list[list[str]] = []

    def add(name: str, value: float | None, target: float, higher: bool, where: str) -> None:
        shown = "-" if value is None else f"{value:.2f}"
        rows.append([name, f"{'>=' if higher else '<='} {target}", shown, verdict(value, target, higher), where])

    for key in ("search_cost_peers_tiny", "search_cost_peers_small", "search_cost_peers_paper"):
        res = results.get(key)
        if res and "step_s" in res.get("RSP on", {}) and "step_s" in res.get("RSP off", {}):
            on, off = res["RSP on"], res["RSP off"]
            add(f"RSP search time / RSP off ({key})", on["step_s"] / off["step_s"], 0.6, False, key)
            add(f"RSP search memory / RSP off ({key})", on["memory_mib"] / max(off["memory_mib"], 1e-9), 0.5, False, key)
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
        add("demo macro-search step / cell-search step (CPU)", stages[0]["total_ms"] / stages[1]["total_ms"], 1.5, False,
            "search_profile_stages")
    for workload, arms in (results.get("busy") or {}).items():
        ratio = busy_ratio(arms)
        add(f"demo {workload} epoch wall: beside a busy core / idle", ratio, 2.2, False, "busy")
    return rows


def busy_ratio(arms: dict[str, list[dict]]) -> float | None:
    """Median wall time beside the busy loop / median idle wall time (None if an arm is empty)."""
    import statistics

    if not arms.get("idle") or not arms.get("busy"):
        return None
    return statistics.median(r["wall_s"] for r in arms["busy"]) / statistics.median(r["wall_s"] for r in arms["idle"])


def header(info: dict[str, Any], command: str, ran: dict[str, float], failed: dict[str, str], rows: list[list[str]]) -> str:
    """The run_all section: where/when/how, what ran, and the targets."""
    lines = [
        "## Benchmark run (`make bench`)",
        "",
        common.device_line(info, threads=1),
        f"Command: `{command}`",
        "",
        "Sections below were (re)written by this run: "
        + ", ".join(f"{k} ({v:.0f} s)" for k, v in ran.items()) + ".",
    ]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
    if not info["gpu"]:
        lines += ["", "No GPU in this run: the paper-preset search cost and the GPU throughput rows are",
                  "not run; on a CUDA machine `make bench` runs them (same command)."]
    lines += ["", "### Targets (issues 9 and 16)", "",
              common.md_table(["target", "goal", "measured", "verdict", "from"], rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks in order; a failing one is reported and the rest still run."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc", type=Path, default=common.DOC)
    ap.add_argument("--quick", action="store_true", help="smoke run: every own benchmark's --quick mode")
    ap.add_argument("--only", nargs="+", default=None, help="run just these benchmarks (names as in the doc)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = common.device_info()
    cuda = info["gpu"] is not None
    results: dict[str, Any] = {}
    ran: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name, call in steps(args.doc, args.quick, cuda).items():
        if args.only and name not in args.only:
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
    print(common.md_table(["target", "goal", "measured", "verdict", "from"], rows))
    common.write_section(args.doc, NAME, header(info, common.command_line("bench.run_all", argv), ran, failed, rows))
    _first(args.doc, NAME)
    return {"results": results, "targets": rows, "failed": failed}


def _first(doc: Path, name: str) -> None:
    """Move `name`'s section right after the title, so the doc opens with the device and targets."""
    start, end = common.markers(name)
    text = doc.read_text()
    i, j = text.find(start), text.find(end) + len(end)
    block, rest = text[i:j], (text[:i] + text[j:]).strip("\n")
    title, _, body = rest.partition("\n")
    atomic_write_text(doc, f"{title}\n\n{block}\n\n{body.strip()}\n")


if __name__ == "__main__":
    main()
