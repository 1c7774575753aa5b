"""Training-speed options of the derived network: `train.channels_last`, `train.compile` (CPU/GPU).

    .venv/bin/python -m bench.train_options [--model tiny] [--size 64 128] [--steps 5] [--quick] [--write]

One training step (forward, CE + aux loss, backward, SGD) of `SegModule`'s network as
`stage=train` builds it, for each option combination, each in a fresh process. On CPU the
step time is process CPU time with 1 thread; `torch.compile` (inductor) compile time is
excluded from the step time and reported on its own. On CUDA the trainer's AMP
(`trainer.precision=16-mixed`, fp16 autocast) is used for every row.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from bench import common

NAME = "train_options"
OPTIONS = {  # label -> (channels_last, compile)
    "baseline (NCHW, eager)": (False, False),
    "train.channels_last=true": (True, False),
    "train.compile=true": (False, True),
    "train.channels_last=true train.compile=true": (True, True),
}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Median step time of one option combination (and the first step's time: compile)."""
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.losses import seg_loss
    from rspnet.stages.summary import load_architecture

    cl, comp = spec["channels_last"], spec["compile"]
    cfg = common.compose_cfg(f"model={spec['model']}", "rsp=on", "head=fcn", f"train.channels_last={cl}",
                             f"train.compile={comp}")
    genotype, macro = load_architecture(cfg)
    torch.manual_seed(0)
    device = spec.get("device", "cpu")
    module = build_seg_module(cfg, genotype.to_dict(), macro.to_dict(), 19).to(device)
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    b, (h, w) = spec["batch"], spec["size"]
    x, y = torch.randn(b, 3, h, w, device=device), torch.randint(0, 19, (b, h, w), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            out = module(x)
        seg_loss(out, y, cfg.train, 255).backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # compiles when train.compile=true
    first = time.perf_counter() - t0
    times = common.time_calls(step, spec["steps"], 1, device)
    return {"step_s": common.median(times), "first_step_s": first}


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every option combination (compile ones skipped with --no-compile)."""
    out = {}
    for label, (cl, comp) in OPTIONS.items():
        if comp and args.no_compile:
            continue
        spec = {"model": args.model, "channels_last": cl, "compile": comp, "size": list(args.size), "batch": args.batch,
                "steps": args.steps, "device": args.device}
        out[label] = common.run_worker("bench.train_options", spec, inprocess=args.quick)
    return out


def table(res: dict[str, dict[str, Any]]) -> str:
    """Step time per option, relative to the baseline."""
    base = res["baseline (NCHW, eager)"]["step_s"]
    return common.md_table(["options", "step (s)", "vs baseline", "first step incl. compile (s)"],
                           [[k, f"{r['step_s']:.3f}", f"{r['step_s'] / base:.2f}", f"{r['first_step_s']:.1f}"] for k, r in res.items()])


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse arguments, measure, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    if common.worker_main(argv, worker):
        return {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--size", type=int, nargs=2, default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--quick", action="store_true", help="eager rows only, batch 1 at 32x64, in-process (seconds)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.size, args.batch, args.steps, args.no_compile = [32, 64], 1, 1, True
    res = run(args)
    print(table(res))
    if args.write:
        body = "\n".join([
            f"## Derived-network training options (model={args.model}, {args.size[0]}x{args.size[1]}, batch {args.batch})",
            "", common.device_line(threads=1), f"Command: `{common.command_line('bench.train_options', argv)}`", "",
            "One training step of the network `stage=train` builds (RSP on, FCN head), median of",
            f"{args.steps} after a warm-up; CPU: process CPU time, 1 thread. GPU rows (fp16 AMP): run",
            "`make bench` on a CUDA machine.", "", table(res)])
        common.write_section(args.write, f"{NAME}_{args.device}", body)
    return res


if __name__ == "__main__":
    main()
