"""Where a stage-1 search step spends its time: torch.profiler top ops, RSP on vs off (CPU).

    .venv/bin/python -m bench.profile_search [--model tiny] [--steps 3] [--quick] [--write]
    .venv/bin/python -m bench.profile_search --stages [--write]   # demo: macro step vs cell step

Profiles `--steps` first-order bi-level steps (`bench.common.search_step`) of the stage-1
`CellSupernet` at the dataset's crop and batch, 1 thread, after one warm-up step, and
groups the aten ops into kinds (conv forward/backward, batch norm, element-wise, resize,
copies/cat, loss, other) so that RSP on and off can be compared side by side. This is
the evidence for the search-time target (RSP on <= 0.6x RSP off) where it is missed.
With --stages it compares, at the demo preset (experiment=demo), the stage-2 `MacroSupernet`
step (cell experiments/genotypes/paper_like.json) with the stage-1 `CellSupernet` step.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import torch

from bench import common

NAME = "search_profile"
# (kind, substrings of aten op names); the first match wins
KINDS = [
    ("conv backward", ("convolution_backward", "conv2d_backward", "conv_depthwise2d_backward")),
    ("conv forward", ("convolution", "conv2d", "conv_depthwise")),
    ("batch norm", ("batch_norm",)),
    ("resize (bilinear)", ("upsample",)),
    ("loss (log-softmax, NLL)", ("log_softmax", "nll_loss")),
    ("copies, cat, slicing", ("copy_", "cat", "clone", "contiguous", "slice", "select", "stack", "as_strided")),
    ("element-wise (add, mul, relu...)", ("add", "mul", "relu", "threshold", "sum", "div", "sub", "fill_", "zero_")),
    ("allocation", ("empty", "resize_")),
]


def kind_of(name: str) -> str:
    """The kind of one aten op name."""
    for kind, keys in KINDS:
        if any(k in name for k in keys):
            return kind
    return "other (optimiser, autograd, ...)"


def profile(model: str, rsp: bool, steps: int, batch: int | None = None, crop: list[int] | None = None) -> dict[str, Any]:
    """Self CPU time per op and per kind (ms per step), op counts, and the step's CPU time."""
    from bench.pcdarts import build

    net, cfg = build({"model": model, "rsp": rsp, "pc_k": 0})
    return profile_net(net, cfg, steps, batch, crop)


def stage_nets(stage: str) -> tuple[torch.nn.Module, Any]:
    """The demo's stage-1 (`cell`) or stage-2 (`macro`) search supernet and its config."""
    from rspnet.genotype import Genotype
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet

    cfg = common.compose_cfg("experiment=demo")
    torch.manual_seed(0)
    if stage == "cell":
        return CellSupernet.from_cfg(cfg, int(cfg.dataset.num_classes)), cfg
    genotype = Genotype.load(common.REPO / "experiments" / "genotypes" / "paper_like.json")
    return MacroSupernet.from_cfg(cfg, genotype, int(cfg.dataset.num_classes)), cfg


def profile_net(net: torch.nn.Module, cfg: Any, steps: int, batch: int | None = None,
                crop: list[int] | None = None) -> dict[str, Any]:
    """`profile` of a given search net (anything with weight_/arch_parameters)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    b = batch or int(cfg.dataset.batch_size)
    h, w = crop or [int(v) for v in cfg.dataset.crop_size]
    x, y = torch.randn(b, 3, h, w), torch.randint(0, int(cfg.dataset.num_classes), (b, h, w))
    step = common.search_step(net, x, y)
    step()  # warm-up: oneDNN primitive caches, allocator
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = {e.key: (e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in prof.key_averages()
           if e.key.startswith("aten::")}
    kinds: Counter[str] = Counter()
    for name, (ms, _) in ops.items():
        kinds[kind_of(name)] += ms
    return {"ops": ops, "kinds": dict(kinds), "total_ms": sum(ms for ms, _ in ops.values()),
            "calls": sum(n for _, n in ops.values())}


def tables(on: dict[str, Any], off: dict[str, Any], top: int, names: tuple[str, str] = ("RSP on", "RSP off")) -> str:
    """Per-kind totals side by side, then the top ops of the first (`names`: the two columns)."""
    kinds = sorted(set(on["kinds"]) | set(off["kinds"]), key=lambda k: -off["kinds"].get(k, 0.0))
    rows = [[k, f"{on['kinds'].get(k, 0.0):.1f}", f"{off['kinds'].get(k, 0.0):.1f}",
             f"{on['kinds'].get(k, 0.0) / max(off['kinds'].get(k, 0.0), 1e-9):.2f}"] for k in kinds]
    rows.append(["**all aten ops**", f"{on['total_ms']:.1f}", f"{off['total_ms']:.1f}", f"{on['total_ms'] / off['total_ms']:.2f}"])
    rows.append(["op calls per step", str(on["calls"]), str(off["calls"]), f"{on['calls'] / off['calls']:.2f}"])
    a, b = names
    by_kind = common.md_table(["kind", f"{a} (ms/step)", f"{b} (ms/step)", f"{a} / {b}"], rows)
    top_on = sorted(on["ops"].items(), key=lambda kv: -kv[1][0])[:top]
    ops = common.md_table([f"op ({a})", "self CPU (ms/step)", "calls/step", f"{b} (ms/step)"],
                          [[k, f"{ms:.1f}", n, f"{off['ops'].get(k, (0.0, 0))[0]:.1f}"] for k, (ms, n) in top_on])
    return by_kind + "\n\n" + ops


def section(on: dict[str, Any], off: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    return "\n".join([
        f"## Profile of a stage-1 search step, RSP on vs off (model={args.model}, CPU)",
        "",
        common.device_line(threads=1),
        f"Command: `{command}`",
        "",
        f"torch.profiler self CPU time of the aten ops of {args.steps} first-order bi-level steps (after a",
        "warm-up step), per step, grouped by kind; then the top ops of RSP on. Conv forward and",
        "backward shrink with RSP (the cells run at half width: ~1/4 of the FLOPs), but at the",
        "tiny preset every conv is only 1-32 channels wide, so a call costs about the same",
        "fixed dispatch/oneDNN set-up time at either width, and the stem, alignments, head,",
        "upsampling and loss (same in both) are a large share of the step.",
        "",
        tables(on, off, args.top),
    ])


def stages_section(macro: dict[str, Any], cell: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section of --stages."""
    return "\n".join([
        "## Profile of a search step at the demo preset: macro search (stage 2) vs cell search (stage 1)", "",
        common.device_line(threads=1), f"Command: `{command}`", "",
        f"torch.profiler self CPU time of the aten ops of {args.steps} first-order bi-level steps (after a",
        "warm-up step) of the demo's `MacroSupernet` (cell experiments/genotypes/paper_like.json) and",
        "`CellSupernet` (experiment=demo: tiny preset, batch 4 of 64x128), per step, grouped by kind.", "",
        tables(macro, cell, args.top, ("macro", "cell"))])


def main(argv: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Profile RSP on and off, print (and optionally write) the tables."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="1 step of batch 1 at 32x64 (seconds)")
    ap.add_argument("--stages", action="store_true", help="demo preset: macro-search step vs cell-search step")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = ([1, [32, 64]] if args.quick else [None, None])
    if args.quick:
        args.steps = 1
    if args.stages:
        macro, cell = (profile_net(*stage_nets(stage), args.steps, *size) for stage in ("macro", "cell"))
        print(tables(macro, cell, args.top, ("macro", "cell")))
        if args.write:
            common.write_section(args.write, f"{NAME}_stages", stages_section(macro, cell, args, common.command_line("bench.profile_search", argv)))
        return macro, cell
    on, off = (profile(args.model, rsp, args.steps, *size) for rsp in (True, False))
    print(tables(on, off, args.top))
    if args.write:
        common.write_section(args.write, f"{NAME}_{args.model}", section(on, off, args, common.command_line("bench.profile_search", argv)))
    return on, off


if __name__ == "__main__":
    main()
