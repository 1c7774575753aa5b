"""Where search time goes: torch.profiler op kinds of the bi-level step, and a demo stage-1 epoch under cProfile.

    python -m bench.profile_search [--model tiny] [--steps 3] [--write]   # stage-1 step, RSP on vs off
    python -m bench.profile_search --stages [--write]   # demo preset: stage-2 (macro) step vs stage-1 (cell) step
    python -m bench.profile_search --epoch [--write]    # one demo cell-search epoch: imports, steps, validation, pictures

The step is `bench.search.step_fn` (the `Architect` training runs), first order, 1 thread, after one
warm-up step; aten ops are grouped into kinds so two nets can be compared side by side.
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from collections import Counter
from typing import Any

import torch

from bench import common, search

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
# demo-epoch part -> (file suffix, function) whose cumulative time is the part's
PARTS = {
    "import rspnet.data (Lightning, albumentations, cv2)": ("rspnet/data/__init__.py", "<module>"),
    "bi-level training steps": ("rspnet/lit/search_module.py", "training_step"),
    "validation steps": ("rspnet/lit/search_module.py", "validation_step"),
    "epoch-end pictures (export_artifacts)": ("rspnet/lit/search_module.py", "export_artifacts"),
}


def kind_of(name: str) -> str:
    """The kind of one aten op name."""
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other (optimiser, autograd, ...)")


def profile_step(
    spec: dict[str, Any], steps: int, batch: int | None = None, crop: list[int] | None = None
) -> dict[str, Any]:
    """Self CPU ms per step per aten op and per kind, and op calls per step, of `bench.search.build(spec)`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    net, cfg = search.build(spec)
    x, y = search.batch_of(cfg, batch or int(cfg.dataset.batch_size), crop or [int(v) for v in cfg.dataset.crop_size])
    step = search.step_fn(net, cfg, x, y)
    step()  # warm-up: oneDNN primitive caches, allocator
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = {e.key: (e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in prof.key_averages()
           if e.key.startswith("aten::")}  # fmt: skip
    kinds: Counter[str] = Counter()
    for name, (ms, _) in ops.items():
        kinds[kind_of(name)] += ms
    total, calls = sum(ms for ms, _ in ops.values()), sum(n for _, n in ops.values())
    return {"ops": ops, "kinds": dict(kinds), "total_ms": total, "calls": calls}


def tables(a: dict[str, Any], b: dict[str, Any], top: int, names: tuple[str, str]) -> str:
    """Per-kind totals side by side, then the top ops of the first."""
    ka, kb = ({k: x["kinds"].get(k, 0.0) for k in set(a["kinds"]) | set(b["kinds"])} for x in (a, b))
    rows = [
        [k, f"{ka[k]:.1f}", f"{kb[k]:.1f}", f"{ka[k] / max(kb[k], 1e-9):.2f}"] for k in sorted(kb, key=lambda k: -kb[k])
    ]
    for label, key, fmt in (("**all aten ops**", "total_ms", ".1f"), ("op calls per step", "calls", "d")):
        rows.append([label, format(a[key], fmt), format(b[key], fmt), f"{a[key] / b[key]:.2f}"])
    n1, n2 = names
    top_ops = [[k, f"{ms:.1f}", n, f"{b['ops'].get(k, (0.0, 0))[0]:.1f}"]
               for k, (ms, n) in sorted(a["ops"].items(), key=lambda kv: -kv[1][0])[:top]]  # fmt: skip
    by_kind = common.md_table(f"kind | {n1} (ms/step) | {n2} (ms/step) | {n1} / {n2}", rows)
    return by_kind + "\n\n" + common.md_table(f"op ({n1}) | self CPU (ms/step) | calls/step | {n2} (ms/step)", top_ops)


def cumulative(stats: pstats.Stats, suffix: str, func: str) -> tuple[float, int]:
    """(cumulative seconds, calls) of the functions named `func` in files ending with `suffix`."""
    total, calls = 0.0, 0
    for (filename, _, name), (_, nc, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == func and filename.endswith(suffix):
            total, calls = total + ct, calls + nc
    return total, calls


def profile_epoch(overrides: list[str]) -> dict[str, Any]:
    """Wall/CPU seconds of a one-epoch demo-like `stage=cell_search` run (imports included) and of each part."""
    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    import rspnet.data  # noqa: F401  (counted: the demo pays it too)
    from rspnet.stages.cell_search import run as run_cell_search

    with tempfile.TemporaryDirectory(prefix="bench_profile_") as out:
        stage = ["stage=cell_search", "model=tiny", "dataset=synthetic", "logger=csv", "trainer.max_epochs=1"]
        run_cell_search(common.compose_cfg(*stage, f"paths.output_dir={out}", *overrides))
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    parts = {p: cumulative(pstats.Stats(prof), *key) for p, key in PARTS.items()}
    rest = wall - sum(s for s, _ in parts.values())
    rows = [[p, n, f"{s:.2f}", f"{100 * s / wall:.0f}%"] for p, (s, n) in parts.items()]
    rows.append(
        ["everything else (Trainer set-up, checkpoints, logging)", "-", f"{rest:.2f}", f"{100 * rest / wall:.0f}%"]
    )
    rows.append(["**whole stage**", "-", f"{wall:.2f} (CPU {cpu:.2f})", "100%"])
    table = common.md_table("part | calls | seconds (wall, under cProfile) | share", rows)
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts, "table": table}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """`--epoch` in a fresh interpreter (so the imports the demo pays are counted, whoever calls it)."""
    res = profile_epoch(spec["overrides"])
    return {k: res[k] for k in ("wall_s", "cpu_s", "parts", "table")}


def main(argv: list[str] | None = None) -> Any:
    """Profile, print (and optionally write) the tables."""
    ap, argv = common.parser(__doc__, argv, worker)
    if ap is None:
        return None
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--stages", action="store_true", help="demo preset: macro-search step vs cell-search step")
    ap.add_argument("--epoch", action="store_true", help="one demo cell-search epoch under cProfile")
    ap.add_argument("--quick", action="store_true", help="1 step of batch 1 at 32x64 / a few images (seconds)")
    args = common.parse(ap, argv)
    torch.set_num_threads(1)
    size: list[Any] = [1, [32, 64]] if args.quick else [None, None]
    steps = 1 if args.quick else args.steps
    desc = (f"torch.profiler self CPU time of the aten ops of {steps} first-order bi-level steps (after a warm-up",
            "step), per step, grouped by kind; then the top ops of the first column.", "")  # fmt: skip
    if args.epoch:
        quick = ["dataset.num_train=8", "dataset.num_val=4", "dataset.image_size=[32,64]", "dataset.crop_size=[32,64]"]
        res = common.run_worker(
            "bench.profile_search", {"overrides": quick if args.quick else []}, inprocess=args.quick
        )
        common.publish(
            args, "demo_stage1_profile", "Demo cell search: where 1 epoch of `stage=cell_search model=tiny` goes",
            "bench.profile_search", "One fresh process, cProfile on, imports included; synthetic data (the demo's 48 train",
            "images, batch 4, less the held-out slice; calls = bi-level steps), csv logger, as `make demo` runs stage 1.",
            "", res["table"],
        )  # fmt: skip
    elif args.stages:
        demo = {"rsp": True, "overrides": ["experiment=demo"]}
        genotype = str(common.REPO / "experiments" / "genotypes" / "paper_like.json")
        res = tuple(profile_step(spec, steps, *size) for spec in ({**demo, "net": "macro", "genotype": genotype}, demo))
        common.publish(
            args, "search_profile_stages", "Profile of a search step at the demo preset: macro (stage 2) vs cell "
            "(stage 1)", "bench.profile_search", *desc, "`MacroSupernet` with experiments/genotypes/paper_like.json vs "
            "`CellSupernet`, experiment=demo.", "", tables(*res, args.top, ("macro", "cell")),
        )  # fmt: skip
    else:
        res = tuple(profile_step({"model": args.model, "rsp": rsp}, steps, *size) for rsp in (True, False))
        common.publish(
            args, f"search_profile_{args.model}", f"Profile of a stage-1 search step, RSP on vs off (model="
            f"{args.model}, CPU)", "bench.profile_search", *desc, tables(*res, args.top, ("RSP on", "RSP off")),
        )  # fmt: skip
    return res


if __name__ == "__main__":
    main()
