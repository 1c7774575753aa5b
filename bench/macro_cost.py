"""Stage-2 (macro search) cost vs depth L, RSP on/off, and the shared-alignment cache.

    .venv/bin/python -m bench.macro_cost [--layers 4 6 8] [--steps 5] [--quick] [--write docs/benchmarks.md]

Each configuration runs in a fresh process (`bench.common.run_worker`) and times bi-level
search steps of `MacroSupernet` (`bench.common.measure_search`: arch step, then weight step)
at the tiny preset. Peak memory: CUDA allocator peak, or growth of the process's peak RSS
on CPU. A second, deterministic memory column counts the activation bytes autograd saves
in one forward — the part that grows with the number of candidate paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import command_line, cuda_device, device_line, md_table, measure_search, run_worker, worker_main, write_section
from rspnet.genotype import Genotype
from rspnet.models.macro_supernet import MacroSupernet

MODULE = "bench.macro_cost"
# a plausible searched cell; the cost depends on the ops only through their conv sizes
OPS = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]
BATCH, SIZE, CLASSES, BASE_WIDTH = 4, (64, 128), 19, 8  # the tiny preset on synthetic data


def saved_activation_bytes(net: MacroSupernet, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of distinct non-parameter storages autograd keeps for backward in one forward."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    return sum(seen.values())


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration (in its own process): time, peak memory, saved activations, Align calls."""
    torch.manual_seed(0)
    genotype = Genotype.from_weights(OPS, rsp=spec["rsp"])
    net = MacroSupernet(genotype, CLASSES, BASE_WIDTH, [4, 8, 16, 32], spec["layers"], rsp=spec["rsp"],
                        reuse_alignment=spec["reuse"])
    res = measure_search(net, BATCH, SIZE, CLASSES, spec["steps"], spec["warmup"], device=spec["device"])
    x = torch.randn(BATCH, 3, *SIZE, device=spec["device"])
    y = torch.randint(0, CLASSES, (BATCH, *SIZE), device=spec["device"])
    res["saved_mib"] = saved_activation_bytes(net, x, y) / 2**20
    res["align_calls"] = len(net.aligns) if spec["reuse"] else sum(len(c) for c in net.candidates.values())
    return {**spec, **res}


def table(rows: list[dict[str, Any]], device: str) -> str:
    """Markdown table of the results."""
    mem = "peak CUDA memory (MiB)" if device == "cuda" else "peak RSS growth (MiB)"
    header = ["L", "RSP", "align cache", "Align calls / forward", "params (M)", "step (s)", mem, "saved activations (MiB)"]
    onoff = lambda b: "on" if b else "off"  # noqa: E731
    return md_table(header, [[r["layers"], onoff(r["rsp"]), onoff(r["reuse"]), r["align_calls"], r["params_m"],
                              r["step_s"], f"{r['memory_mib']:.1f}", f"{r['saved_mib']:.1f}"] for r in rows])


def section(rows: list[dict[str, Any]], device: str, command: str, threads: int) -> str:
    """The body of this benchmark's docs/benchmarks.md section."""
    return "\n".join([
        "## Macro search cost (stage 2) vs L, RSP, alignment cache",
        "",
        device_line(threads=threads),
        f"Command: `{command}`",
        "",
        "Bi-level search steps (first-order arch step + weight step, SGD) of `MacroSupernet` at the",
        f"tiny preset (B = {BASE_WIDTH}, scales 4/8/16/32), batch {BATCH} of {SIZE[0]}x{SIZE[1]} images, "
        f"{CLASSES} classes,",
        "each configuration in a fresh process; step time is the median. *Align calls / forward*",
        "counts the 1x1 conv-BN + resize alignments: with the cache one per (source node, target",
        "scale), without it one per (source node, target node). *Saved activations* is the",
        "deterministic part of the memory that grows with the candidates: the distinct tensors",
        "autograd keeps for backward in one forward (weights excluded). Times on a shared CPU are",
        "noisy; at tiny widths per-op overhead, not FLOPs, dominates them.",
        "",
        table(rows, device),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the grid (each configuration in a worker process), print it, optionally write the doc."""
    args_in = sys.argv[1:] if argv is None else argv
    if worker_main(args_in, worker):
        return []
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=cuda_device())
    ap.add_argument("--write", type=Path, default=None, help="markdown file to put the section in")
    ap.add_argument("--quick", action="store_true", help="smoke run: L = 2 and 3, 1 timed step")
    args = ap.parse_args(args_in)
    if args.quick:
        args.layers, args.steps, args.warmup = [2, 3], 1, 0
    rows = []
    for layers in args.layers:
        for rsp in (True, False):
            for reuse in (True, False):
                spec = {"layers": layers, "rsp": rsp, "reuse": reuse, "steps": args.steps, "warmup": args.warmup,
                        "device": args.device, "threads": args.threads}
                rows.append(run_worker(MODULE, spec))
    print(table(rows, args.device))
    if args.write:
        write_section(args.write, "macro_cost", section(rows, args.device, command_line(MODULE, args_in), args.threads))
        print(f"wrote {args.write}")
    return rows


if __name__ == "__main__":
    main()
