"""Stage-2 (macro search) cost vs depth L, RSP on/off, and the shared-alignment cache.

    .venv/bin/python -m bench.macro_cost [--layers 4 6 8] [--steps 5] [--write docs/benchmarks.md]

Measures one first-order bi-level search step (arch forward/backward + weight
forward/backward + both optimiser steps) of `MacroSupernet` at the tiny preset on
synthetic-sized inputs. Memory: on CUDA the allocator's peak; on CPU (no allocator peak
available) the bytes of distinct activation tensors autograd saves for backward in one
forward, which is what grows with the number of candidate paths.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rspnet.genotype import Genotype
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.utils.io import atomic_write_text

START, END = "<!-- bench:macro_cost:start -->", "<!-- bench:macro_cost:end -->"
# a plausible searched cell; the cost depends on the ops only through their conv sizes
GENOTYPE = Genotype.from_weights([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], rsp=True)


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


def measure(layers: int, rsp: bool, reuse: bool, steps: int, device: torch.device, batch: int = 4,
            size: tuple[int, int] = (64, 128), base_width: int = 8) -> dict:
    """Median step time and peak memory of one configuration."""
    torch.manual_seed(0)
    net = MacroSupernet(GENOTYPE, 19, base_width, [4, 8, 16, 32], layers, rsp=rsp, reuse_alignment=reuse).to(device)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.95)
    a_opt = torch.optim.SGD(net.arch_parameters(), lr=0.005)
    x = torch.randn(batch, 3, *size, device=device)
    y = torch.randint(0, 19, (batch, *size), device=device)

    def step() -> None:
        for opt in (a_opt, w_opt):
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

    step()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated()
    else:
        net.zero_grad(set_to_none=True)
        memory = saved_activation_bytes(net, x, y)
    return {
        "layers": layers, "rsp": rsp, "reuse": reuse, "aligns": len(net.aligns),
        "align_calls": len(net.aligns) if reuse else sum(len(c) for c in net.candidates.values()),
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "step_s": statistics.median(times), "memory_mib": memory / 2**20,
    }


def table(rows: list[dict], device: torch.device) -> str:
    """Markdown table of the results."""
    mem = "peak CUDA memory (MiB)" if device.type == "cuda" else "saved activations (MiB)"
    lines = [f"| L | RSP | align cache | Align calls / forward | params (M) | step (s) | {mem} |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layers']} | {'on' if r['rsp'] else 'off'} | {'on' if r['reuse'] else 'off'} | "
                     f"{r['align_calls']} | {r['params_m']:.3f} | {r['step_s']:.3f} | {r['memory_mib']:.1f} |")
    return "\n".join(lines)


def section(rows: list[dict], device: torch.device, command: str) -> str:
    """The docs/benchmarks.md section, between markers so a rerun replaces it."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"
    return "\n".join([
        START,
        "## Macro search cost (stage 2) vs L, RSP, alignment cache",
        "",
        f"Device: {name}; torch {torch.__version__}; date {dt.date.today().isoformat()}.",
        f"Command: `{command}`",
        "",
        "One first-order bi-level step (arch + weight forward/backward and optimiser steps) of",
        "`MacroSupernet` at the tiny preset (B = 8, scales 4/8/16/32), batch 4 of 64x128 images,",
        "19 classes; step time is the median of the timed steps. *Align calls / forward* is the",
        "number of 1x1 conv-BN + resize alignments: with the cache one per (source node, target",
        "scale), without it one per (source node, target node).",
        "",
        table(rows, device),
        "",
        END,
    ])


def write_section(path: Path, text: str) -> Path:
    """Replace this benchmark's section in `path` (or append it), atomically."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    return atomic_write_text(path, new)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the grid, print the table and optionally write docs/benchmarks.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--write", type=Path, default=None, help="markdown file to put the section in")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [measure(L, rsp, reuse, args.steps, device)
            for L in args.layers for rsp in (True, False) for reuse in (True, False)]
    print(table(rows, device))
    if args.write:
        command = "python -m bench.macro_cost " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        write_section(args.write, section(rows, device, command.strip()))
        print(f"wrote {args.write}")
    return rows


if __name__ == "__main__":
    main()
