"""The derived network: params, GFLOPs, CPU latency, GPU throughput vs HRNetV2-W48; training options.

    python -m bench.derived [--size 512 1024] [--steps 3] [--write]            # vs HRNetV2-W48
    python -m bench.derived --train-options [--model tiny] [--write]           # channels_last / compile

Architecture: `experiments/genotypes/paper_like.json` + `default_macro` with the FCN head, 19
classes; the peer is `bench.hrnet_ref` with the same head. Params and GFLOPs are counted on the
meta device (`rspnet.stages.summary`). CPU latency: batch 1, fp32, no_grad, eval mode, median
process CPU time of `--steps` forwards after a warm-up, 1 thread, one process per row. GPU
throughput (only with CUDA): images/s at 1024x2048, fp16 autocast + channels_last; otherwise the
rows say "not run (no GPU)". --train-options: one training step (forward, CE + aux loss, backward,
SGD) of the net `stage=train` builds per option combination; compile time is reported apart.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from bench import common

NUM_CLASSES = 19
ROWS = [  # (label, net, model preset, rsp, channels_last on CPU)
    ("RSPNet paper, RSP on", "rspnet", "paper", True, False),
    ("RSPNet paper, RSP off", "rspnet", "paper", False, False),
    ("RSPNet small, RSP on", "rspnet", "small", True, False),
    ("RSPNet tiny, RSP on", "rspnet", "tiny", True, False),
    ("RSPNet tiny, RSP on, channels_last", "rspnet", "tiny", True, True),
    ("RSPNet small, RSP on, channels_last", "rspnet", "small", True, True),
    ("HRNetV2-W48 + FCN head", "hrnet", "paper", False, False),
]
OPTIONS = {  # label -> (channels_last, compile)
    "baseline (NCHW, eager)": (False, False),
    "train.channels_last=true": (True, False),
    "train.compile=true": (False, True),
    "train.channels_last=true train.compile=true": (True, True),
}


def build(net: str, model: str, rsp: bool) -> nn.Module:
    """The network of one row, on the current default device (use `torch.device('meta')` to count)."""
    if net == "hrnet":
        from bench.hrnet_ref import hrnetv2_w48

        return hrnetv2_w48(NUM_CLASSES)
    from rspnet.architecture import load_architecture
    from rspnet.models.derived import DerivedNet

    cfg = common.compose_cfg(f"model={model}", f"rsp={'on' if rsp else 'off'}", "head=fcn", "genotype=null")
    return DerivedNet.from_cfg(cfg, *load_architecture(cfg), NUM_CLASSES)


def latency(m: nn.Module, x: torch.Tensor, steps: int, warmup: int, amp: bool = False) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per no-grad forward of `m` on `x` (fp16 autocast with `amp`)."""
    m.eval()

    def fwd() -> None:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
            m(x)

    return common.time_calls(fwd, steps, warmup, x.device)


def train_step_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Median step time of one training-option combination (and the first step's: compile)."""
    from rspnet.architecture import load_architecture
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.losses import seg_loss

    options = [f"train.channels_last={spec['channels_last']}", f"train.compile={spec['compile']}"]
    cfg = common.compose_cfg(f"model={spec['model']}", "rsp=on", "head=fcn", *options)
    torch.manual_seed(0)
    device = spec.get("device", "cpu")
    module = build_seg_module(cfg, *load_architecture(cfg), NUM_CLASSES).to(device)
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    b, (h, w) = spec["batch"], spec["size"]
    x, y = torch.randn(b, 3, h, w, device=device), torch.randint(0, NUM_CLASSES, (b, h, w), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            out = module(x)
        seg_loss(out, y, 255).backward()
        opt.step()

    first = common.time_calls(step, 1, 0, device)[0][0]  # wall clock; compiles when train.compile=true
    times = common.time_calls(step, spec["steps"], 1, device)
    return {"step_s": common.median([w for w, _ in times]), "step_cpu_s": common.median([c for _, c in times]),
            "first_step_s": first}  # fmt: skip


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One row in its own process: CPU latency (and, on CUDA, throughput), or a training-option step."""
    if "compile" in spec:
        return train_step_worker(spec)
    torch.manual_seed(0)
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    m = build(spec["net"], spec["model"], spec["rsp"]).to(memory_format=fmt)
    x = torch.randn(1, 3, *spec["size"]).contiguous(memory_format=fmt)
    with common.PeakMemory("cpu") as mem:
        times = latency(m, x, spec["steps"], spec["warmup"])
    wall, cpu = common.median([w for w, _ in times]), common.median([c for _, c in times])
    out: dict[str, Any] = {"cpu_latency_wall_s": wall, "cpu_latency_s": cpu, "cpu_memory_mib": mem.mib, "gpu_ips": None}
    if spec.get("gpu") and torch.cuda.is_available():
        m = m.cuda().to(memory_format=torch.channels_last)
        xg = torch.randn(spec["gpu_batch"], 3, *spec["gpu_size"], device="cuda")
        times = latency(m, xg.contiguous(memory_format=torch.channels_last), max(spec["steps"], 10), 3, True)
        out |= {
            "gpu_ips": spec["gpu_batch"] / common.median([w for w, _ in times]),
            "gpu_name": torch.cuda.get_device_name(),
        }
    return out


def run_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One dict per row: label, params, GFLOPs, CPU latency/memory, GPU images/s (or None); the table."""
    from rspnet.models.cost import count_gflops

    run = {k: getattr(args, k) for k in ("size", "steps", "warmup", "gpu_size", "gpu_batch")}
    results = []
    for label, net, model, rsp, cl in ROWS:
        with torch.device("meta"):
            m = build(net, model, rsp)
        params, gflops = sum(p.numel() for p in m.parameters()) / 1e6, count_gflops(m, tuple(args.size))
        row = {"label": label, "params_m": params, "gflops": gflops, "cpu_latency_s": None, "gpu_ips": None}
        if not (args.quick and model != "tiny"):  # --quick: the big nets are counted on meta only
            spec = {"net": net, "model": model, "rsp": rsp, "channels_last": cl, "gpu": not cl, **run}
            row |= common.run_worker("bench.derived", spec, inprocess=args.quick)
        results.append(row)
    ref = next(r for r in results if r["label"].startswith("HRNet"))
    rows = [
        [r["label"], f"{r['params_m']:.2f}", f"{r['gflops']:.3g}",
         "not run (--quick)" if r["cpu_latency_s"] is None
         else f"{r['cpu_latency_wall_s']:.3f} ({r['cpu_latency_s']:.3f})",
         f"{r['gpu_ips']:.1f}" if r["gpu_ips"] else "not run (no GPU)", f"{r['params_m'] / ref['params_m']:.3f}",
         f"{r['gpu_ips'] / ref['gpu_ips']:.2f}" if r["gpu_ips"] and ref["gpu_ips"] else "-"]
        for r in results
    ]  # fmt: skip
    gpu = f"GPU images/s @{args.gpu_size[0]}x{args.gpu_size[1]} fp16+CL"
    header = f"network | params (M) | GFLOPs | CPU latency, wall (process CPU) (s) | {gpu} | params / HRNet | GPU speed / HRNet"
    common.publish(
        args, "derived_cost", f"Derived network vs HRNetV2-W48 at {args.size[0]}x{args.size[1]}", "bench.derived",
        "Genotype `experiments/genotypes/paper_like.json`, `default_macro` trellis, FCN head, 19 classes; the peer",
        "is `bench/hrnet_ref.py` (HRNetV2-W48, 65.86M params as published 65.9M) with the same `FCNHead`. GFLOPs",
        "by `torch.utils.flop_counter` (2 per multiply-accumulate), batch 1. CPU latency: wall clock (process CPU),",
        f"fp32, batch 1, median of {args.steps} forwards. GPU: batch {args.gpu_batch}, fp16 + channels_last. Targets",
        "(issue 9): RSP paper net <= 0.3x HRNet's params and >= 1.5x its GPU throughput.", "",
        common.md_table(header, rows),
    )  # fmt: skip
    return results


def run_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every option combination (compile ones skipped with --quick: minutes of inductor)."""
    run = {"model": args.model, "size": args.train_size, "batch": args.batch, "steps": args.steps}
    specs = {label: {"channels_last": cl, "compile": comp, "device": args.device, **run}
             for label, (cl, comp) in OPTIONS.items() if not (comp and args.quick)}  # fmt: skip
    res = {label: common.run_worker("bench.derived", spec, inprocess=args.quick) for label, spec in specs.items()}
    base = res["baseline (NCHW, eager)"]["step_s"]
    rows = [[k, f"{r['step_s']:.3f}", f"{r['step_cpu_s']:.3f}", f"{r['step_s'] / base:.2f}", f"{r['first_step_s']:.1f}"]
            for k, r in res.items()]  # fmt: skip
    h, w = args.train_size
    common.publish(
        args, f"train_options_{args.device}", f"Derived-network training options (model={args.model}, {h}x{w}, "
        f"batch {args.batch})", "bench.derived", "One training step of the network `stage=train` builds (RSP on, FCN "
        f"head), median of {args.steps} after a warm-up; wall clock (process CPU beside it); CPU: 1 thread; CUDA: fp16 "
        "AMP. One fresh process per row.", "",
        common.md_table("options | step wall (s) | step CPU (s) | wall vs baseline | first step incl. compile, wall (s)",
                        rows),
    )  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> Any:
    """Parse arguments, measure, print (and optionally write) the table."""
    ap, argv = common.parser(__doc__, argv, worker)
    if ap is None:
        return []
    ap.add_argument("--size", type=int, nargs=2, default=[512, 1024], help="H W of the CPU latency input")
    ap.add_argument("--steps", type=int, default=None, help="timed calls (default 3 forwards / 5 training steps)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--gpu-size", type=int, nargs=2, default=[1024, 2048])
    ap.add_argument("--gpu-batch", type=int, default=2)
    ap.add_argument("--train-options", action="store_true", help="training step per channels_last/compile option")
    ap.add_argument("--model", default="tiny", help="--train-options: model preset")
    ap.add_argument("--train-size", type=int, nargs=2, default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--quick", action="store_true", help="tiny nets at 64x128 / 32x64, in-process (seconds): the tests")
    args = common.parse(ap, argv)
    torch.set_num_threads(1)
    args.steps = args.steps or (5 if args.train_options else 3)
    if args.quick:
        args.size, args.steps, args.warmup, args.train_size, args.batch = [64, 128], 1, 0, [32, 64], 1
    return run_options(args) if args.train_options else run_cost(args)


if __name__ == "__main__":
    main()
