"""Derived network vs HRNetV2-W48 (same FCN head): params, GFLOPs, CPU latency, GPU throughput.

    .venv/bin/python -m bench.derived_cost [--size 512 1024] [--steps 3] [--quick] [--write]

Architecture: `experiments/genotypes/paper_like.json` + `default_macro` (the `model=paper`
calibration, docs/design.md) with the FCN head, 19 classes; the peer is `bench.hrnet_ref`.
Params and GFLOPs are counted on the meta device (`rspnet.stages.summary`). CPU latency:
batch 1, fp32, no_grad, eval mode, median of `--steps` forwards after one warm-up, 1 thread,
each network in a fresh process. GPU throughput (only when CUDA is present): images/s at
1024x2048, batch `--gpu-batch`, fp16 autocast + channels_last; rows say "not run (no GPU)"
otherwise, so `make bench` on a GPU machine fills them with one command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import nn

from bench import common

NAME = "derived_cost"
NUM_CLASSES = 19
# (label, net, model preset, rsp, channels_last on CPU)
ROWS = [
    ("RSPNet paper, RSP on", "rspnet", "paper", True, False),
    ("RSPNet paper, RSP off", "rspnet", "paper", False, False),
    ("RSPNet small, RSP on", "rspnet", "small", True, False),
    ("RSPNet tiny, RSP on", "rspnet", "tiny", True, False),
    ("RSPNet tiny, RSP on, channels_last", "rspnet", "tiny", True, True),
    ("RSPNet small, RSP on, channels_last", "rspnet", "small", True, True),
    ("HRNetV2-W48 + FCN head", "hrnet", "paper", False, False),
]


def build(net: str, model: str, rsp: bool) -> nn.Module:
    """The network of one row, on the current default device (use `torch.device('meta')` to count)."""
    if net == "hrnet":
        from bench.hrnet_ref import hrnetv2_w48

        return hrnetv2_w48(NUM_CLASSES)
    from rspnet.models.derived import DerivedNet
    from rspnet.stages.summary import load_architecture

    cfg = common.compose_cfg(f"model={model}", f"rsp={'on' if rsp else 'off'}", "head=fcn", "genotype=null", "macro_arch=null")
    return DerivedNet.from_cfg(cfg, *load_architecture(cfg), NUM_CLASSES)


def count(net: str, model: str, rsp: bool, size: tuple[int, int]) -> tuple[float, float]:
    """(params in M, GFLOPs at `size`, batch 1), built on the meta device."""
    from rspnet.stages.summary import count_gflops

    with torch.device("meta"):
        m = build(net, model, rsp)
    return sum(p.numel() for p in m.parameters()) / 1e6, count_gflops(m, size)


def latency(m: nn.Module, x: torch.Tensor, steps: int, warmup: int, amp: bool = False) -> list[float]:
    """Seconds per no-grad forward of `m` on `x` (fp16 autocast with `amp`)."""
    m.eval()

    def fwd() -> None:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
            m(x)

    return common.time_calls(fwd, steps, warmup, x.device)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU latency (and, on CUDA, throughput) of one row, in its own process."""
    torch.manual_seed(0)
    m = build(spec["net"], spec["model"], spec["rsp"])
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    m = m.to(memory_format=fmt)
    x = torch.randn(1, 3, *spec["size"]).contiguous(memory_format=fmt)
    with common.PeakMemory("cpu") as mem:
        cpu = latency(m, x, spec["steps"], spec["warmup"])
    out: dict[str, Any] = {"cpu_latency_s": common.median(cpu), "cpu_memory_mib": mem.mib, "gpu_ips": None}
    if spec.get("gpu") and torch.cuda.is_available():
        m = m.cuda().to(memory_format=torch.channels_last)
        xg = torch.randn(spec["gpu_batch"], 3, *spec["gpu_size"], device="cuda").contiguous(memory_format=torch.channels_last)
        times = latency(m, xg, max(spec["steps"], 10), 3, amp=True)
        out["gpu_ips"] = spec["gpu_batch"] / common.median(times)
        out["gpu_name"] = torch.cuda.get_device_name()
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One dict per row: label, params, GFLOPs, CPU latency/memory, GPU images/s (or None)."""
    size = tuple(args.size)
    results = []
    for label, net, model, rsp, cl in ROWS:
        params, gflops = count(net, model, rsp, size)
        if args.quick and model != "tiny":  # counted on meta only: their forwards take seconds even at 64x128
            results.append({"label": label, "params_m": params, "gflops": gflops, "cpu_latency_s": None,
                            "cpu_memory_mib": None, "gpu_ips": None})
            continue
        spec = {"net": net, "model": model, "rsp": rsp, "channels_last": cl, "size": list(size), "steps": args.steps,
                "warmup": args.warmup, "gpu": not cl, "gpu_size": list(args.gpu_size), "gpu_batch": args.gpu_batch}
        res = common.run_worker("bench.derived_cost", spec, inprocess=args.quick)
        results.append({"label": label, "params_m": params, "gflops": gflops, **res})
    return results


def table(results: list[dict[str, Any]], gpu_size: list[int]) -> str:
    """Rows with params/throughput relative to HRNetV2-W48 (targets: <= 0.3x params, >= 1.5x GPU images/s)."""
    ref = next((r for r in results if r["label"].startswith("HRNet")), None)
    rows = []
    for r in results:
        gpu = f"{r['gpu_ips']:.1f}" if r.get("gpu_ips") else "not run (no GPU)"
        lat = f"{r['cpu_latency_s']:.3f}" if r.get("cpu_latency_s") is not None else "not run (--quick)"
        rel_p = f"{r['params_m'] / ref['params_m']:.3f}" if ref else ""
        rel_g = f"{r['gpu_ips'] / ref['gpu_ips']:.2f}" if ref and r.get("gpu_ips") and ref.get("gpu_ips") else "-"
        rows.append([r["label"], f"{r['params_m']:.2f}", f"{r['gflops']:.3g}", lat, gpu, rel_p, rel_g])
    return common.md_table(["network", "params (M)", "GFLOPs", "CPU latency (s)",
                            f"GPU images/s @{gpu_size[0]}x{gpu_size[1]} fp16+CL", "params / HRNet", "GPU speed / HRNet"], rows)


def section(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    gpu = next((r["gpu_name"] for r in results if r.get("gpu_name")), None)
    return "\n".join([
        f"## Derived network vs HRNetV2-W48 at {args.size[0]}x{args.size[1]}",
        "",
        common.device_line(threads=1) + (f" GPU rows: {gpu}." if gpu else " GPU rows: not run (no GPU in this session)."),
        f"Command: `{command}`",
        "",
        "Genotype `experiments/genotypes/paper_like.json`, `default_macro` trellis, FCN head, 19 classes;",
        "the peer is `bench/hrnet_ref.py` (HRNetV2-W48 re-implemented, 65.86M params as published",
        f"65.9M) with the same `FCNHead`. GFLOPs at {args.size[0]}x{args.size[1]}, batch 1, counted by",
        "`torch.utils.flop_counter` (2 FLOPs per multiply-accumulate). CPU latency: fp32, batch 1,",
        f"no_grad, median of {args.steps} forwards after {args.warmup} warm-up, 1 thread, one process per row.",
        f"GPU: batch {args.gpu_batch} at {args.gpu_size[0]}x{args.gpu_size[1]}, fp16 autocast + channels_last.",
        "Targets (issue 9): RSP paper net <= 0.3x HRNet's params and >= 1.5x its GPU throughput.",
        "",
        table(results, args.gpu_size),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, measure every row, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    if common.worker_main(argv, worker):
        return []
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=[512, 1024], help="H W of the CPU latency input")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--gpu-size", type=int, nargs=2, default=[1024, 2048])
    ap.add_argument("--gpu-batch", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny nets at 64x128, in-process (seconds): for the tests")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.size, args.steps, args.warmup = [64, 128], 1, 0
    results = run(args)
    print(table(results, args.gpu_size))
    if args.write:
        common.write_section(args.write, NAME, section(results, args, common.command_line("bench.derived_cost", argv)))
    return results


if __name__ == "__main__":
    main()
