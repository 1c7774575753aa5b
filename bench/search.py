"""Search cost: the bi-level step training runs (`rspnet.search.bilevel.Architect`), variants as flags.

    python -m bench.search [--models tiny small] [--variants "RSP on" ...] [--repeats 3] [--write]
    python -m bench.search --scaling [--plot docs/img/search_scaling.png] [--write]   # stage 1 vs L, B, image size
    python -m bench.search --macro [--layers 4 6 8] [--write]   # stage 2 vs L, RSP, alignment cache

One step = arch step + weight step (first order, or DARTS' unrolled gradient) of the stage-1
`CellSupernet` (or the stage-2 `MacroSupernet` with --macro), optimisers and clipping from the
`search` config group, on random batches. Each configuration runs in a fresh process; step times
are medians of wall clock (first) and process CPU time (beside: what a shared machine's load
barely moves), over the timed steps and then over `--repeats` interleaved processes. Memory: CPU =
growth of the process's peak RSS over the timed steps; CUDA = allocator peak (bf16 autocast).
The PC-DARTS peer (Xu et al. 2020, partial channels K = 4, RSP off) replaces every edge's MixedOp
in the same supernet; its edge normalisation (2 scalars per cell, no measurable cost) is left out.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import common

VARIANTS = {  # label -> (rsp, partial-channel K or 0, second order)
    "RSP on": (True, 0, False),
    "RSP off": (False, 0, False),
    "RSP on, 2nd order": (True, 0, True),
    "RSP off, 2nd order": (False, 0, True),
    "PC-DARTS K=4 (RSP off)": (False, 4, False),
}
# model preset -> (batch, crop, steps, warmup): the CPU sizes of the doc, the paper crop on a GPU
PRESETS = {"tiny": (4, [64, 128], 6, 2), "small": (2, [64, 128], 3, 1), "paper": (2, [512, 1024], 5, 2)}
PLOT = common.IMG / "search_scaling.png"
BASE = {"layers": 3, "width": 8, "size": [64, 128]}
GRID = {"layers": [2, 3, 4, 6], "width": [4, 8, 16, 24], "size": [[32, 64], [64, 128], [96, 192], [128, 256]]}
LABEL = {"layers": "depth L (search_layers)", "width": "base width B", "size": "image pixels (H x W)"}
MACRO_OPS = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]  # a plausible searched cell for stage 2


class PCMixedOp(nn.Module):
    """Partial-channel MixedOp: ops on the first C/K channels, the rest bypass; shuffle K groups."""

    def __init__(self, channels: int, k: int = 4, affine: bool = False) -> None:
        from rspnet.search_space.ops import PRIMITIVES, make_op

        super().__init__()
        if channels % k:
            raise ValueError(f"partial channels need C divisible by K, got C={channels}, K={k}")
        self.k, self.part = k, channels // k
        self.ops = nn.ModuleList(make_op(name, self.part, affine) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights`: [num_ops] softmax of this edge's alpha row."""
        from rspnet.search_space.cell import channel_shuffle

        y = sum(w * op(x[:, : self.part]) for w, op in zip(weights, self.ops))
        return channel_shuffle(torch.cat([y, x[:, self.part :]], dim=1), self.k)


def partial_channel(net: nn.Module, k: int = 4) -> nn.Module:
    """Replace every SearchCell's MixedOps in `net` by PCMixedOp(K) (in place); returns `net`."""
    from rspnet.search_space.cell import EDGES, SearchCell

    for cell in (m for m in net.modules() if isinstance(m, SearchCell)):
        cell.edges = nn.ModuleList(PCMixedOp(cell.channels, k) for _ in EDGES)
    return net


def build(spec: dict[str, Any]) -> tuple[nn.Module, Any]:
    """The search net of `spec` (net cell|macro, model, rsp, pc_k, overrides, reuse) and its config."""
    from rspnet.genotype import Genotype
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet

    cfg = common.compose_cfg(
        f"model={spec.get('model', 'tiny')}", f"rsp={'on' if spec['rsp'] else 'off'}", *spec.get("overrides", [])
    )
    classes = int(cfg.dataset.num_classes)
    torch.manual_seed(0)
    if spec.get("net") == "macro":
        given = spec.get("genotype")
        genotype = Genotype.load(given) if given else Genotype.from_weights(MACRO_OPS, rsp=spec["rsp"])
        net = MacroSupernet.from_cfg(cfg, genotype, classes)
        net.reuse_alignment = spec.get("reuse", True)
        return net, cfg
    if not spec.get("pc_k"):
        return CellSupernet.from_cfg(cfg, classes), cfg
    with torch.device("meta"):  # never allocate the full-width ops that partial_channel replaces
        net = partial_channel(CellSupernet.from_cfg(cfg, classes), spec["pc_k"])
    net = net.to_empty(device="cpu")
    for m in net.modules():
        if m is not net and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_(0.0, 1e-3)  # CellSupernet's alpha init
    return net, cfg


def step_fn(net: nn.Module, cfg: Any, x: torch.Tensor, y: torch.Tensor, second_order: bool = False) -> Any:
    """One bi-level step of `net` on (x, y) as `SearchModule.training_step` runs it (bf16 autocast on CUDA)."""
    from rspnet.search.bilevel import Architect, build_optimizers

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inp.device.type, dtype=torch.bfloat16, enabled=inp.device.type == "cuda"):
            return net(inp)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, ignore_index=int(cfg.dataset.ignore_index))

    w_opt, a_opt = build_optimizers(net.weight_parameters(), net.arch_parameters(), cfg.search)
    arch = Architect(fwd, loss, w_opt, a_opt, second_order=second_order, grad_clip=cfg.search.get("grad_clip"))
    return lambda: arch.step((x, y), (x, y))


def batch_of(cfg: Any, batch: int, crop: list[int], device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random batch [B, 3, H, W] with labels."""
    torch.manual_seed(0)
    y = torch.randint(0, int(cfg.dataset.num_classes), (batch, *crop), device=device)
    return torch.randn(batch, 3, *crop, device=device), y


def saved_activation_bytes(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of distinct non-parameter storages autograd keeps for backward in one forward."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    return sum(seen.values())


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration (in its own process): wall and CPU per step, peak memory, params."""
    device = spec.get("device", "cpu")
    net, cfg = build(spec)
    x, y = batch_of(cfg, spec["batch"], spec["crop"], device)
    step = step_fn(net.to(device), cfg, x, y, spec.get("second_order", False))
    with common.PeakMemory(device) as mem:
        times = common.time_calls(step, spec["steps"], spec["warmup"], device)
    wall, cpu = (common.median(t) for t in zip(*times))
    res = {"step_s": wall, "cpu_s": cpu, "memory_mib": mem.mib, "batch": spec["batch"], "crop": spec["crop"]}
    res["params_m"] = sum(p.numel() for p in net.parameters()) / 1e6
    if spec.get("net") == "macro":
        res["saved_mib"] = saved_activation_bytes(net, x, y) / 2**20
        res["align_calls"] = len(net.aligns) if net.reuse_alignment else sum(map(len, net.candidates.values()))
    return res


def measure(specs: dict[Any, dict[str, Any]], repeats: int, inprocess: bool) -> dict[Any, dict[str, Any]]:
    """Every spec `repeats` times, interleaved (a burst of load hits all alike); medians per spec."""
    runs: dict[Any, list[dict[str, Any]]] = {k: [] for k in specs}
    errors: dict[Any, str] = {}
    for _ in range(repeats):
        for key, spec in specs.items():
            try:
                runs[key].append(common.run_worker("bench.search", spec, inprocess=inprocess))
            except RuntimeError as e:  # e.g. out of memory at the paper preset: keep the other rows
                errors[key] = str(e).splitlines()[-1][:120]
    medians = ("step_s", "cpu_s", "memory_mib")
    out = {k: rs[0] | {m: common.median([r[m] for r in rs]) for m in medians} for k, rs in runs.items() if rs}
    return out | {k: {"error": msg} for k, msg in errors.items() if k not in out}


def cost_table(res: dict[tuple[str, str], dict[str, Any]], device: str) -> str:
    """Rows per (model, variant): wall first, CPU beside, time and memory relative to RSP off (same order)."""
    rows = []
    for (model, name), r in res.items():
        if "error" in r:
            rows.append([model, name, "-", f"failed: {r['error']}", "-", "-", "-", "-"])
            continue
        ref = res.get((model, "RSP off, 2nd order" if VARIANTS[name][2] else "RSP off"), {})
        rel = [f"{r[k] / max(ref[k], 1e-9):.2f}" for k in ("step_s", "memory_mib")] if "step_s" in ref else ["", ""]
        size = f"{model} ({r['batch']} x {r['crop'][0]}x{r['crop'][1]})"
        rows.append(
            [size, name, *(f"{r[k]:.3f}" for k in ("params_m", "step_s", "cpu_s")), f"{r['memory_mib']:.0f}", *rel]
        )
    mem = "peak CUDA memory (MiB)" if device == "cuda" else "peak RSS growth (MiB)"
    header = f"model (batch) | variant | params (M) | step wall (s) | step CPU (s) | {mem} | wall / RSP off"
    return common.md_table(header + " | memory / RSP off", rows)


def run_cost(args: argparse.Namespace) -> dict[tuple[str, str], dict[str, Any]]:
    """The search-cost table: every model preset x variant."""
    specs = {}
    for model in args.models:
        batch, crop, steps, warmup = (1, [32, 64], 1, 1) if args.quick else PRESETS[model]
        for name in args.variants:
            rsp, k, second = VARIANTS[name]
            run = {"steps": steps, "warmup": warmup, "batch": batch, "crop": crop, "device": args.device}
            specs[(model, name)] = {"model": model, "rsp": rsp, "pc_k": k, "second_order": second, **run}
    res = measure(specs, args.repeats, args.quick)
    if not any("step_s" in r for r in res.values()):
        raise RuntimeError(f"every variant failed: {res}")
    common.publish(
        args, "search_cost", "Stage-1 search cost: RSP on/off, first/second order, PC-DARTS peer", "bench.search",
        "One bi-level step (`rspnet.search.bilevel.Architect`: arch step + weight step, what `SearchModule` runs per",
        "batch) of the stage-1 `CellSupernet` on random images; median of the timed steps after warm-up, then over",
        f"{args.repeats} fresh processes per row. Targets: RSP on <= 0.6x the time and <= 0.5x the memory of RSP",
        "off (issue 9); at `small`, <= 0.5x the wall time and <= 0.35x the memory (issue 16; checked by bench.run_all).",
        "", cost_table(res, args.device),
    )  # fmt: skip
    return res


def run_scaling(args: argparse.Namespace) -> dict[tuple[str, str, bool], dict[str, Any]]:
    """Step time and memory vs one factor at a time around BASE, RSP on and off; plot + table."""
    grid = {f: v[:2] for f, v in GRID.items()} if args.quick else GRID
    steps, warmup, batch = (1, 0, 1) if args.quick else (3, 1, 4)
    specs = {}
    for factor, values in grid.items():
        for value in values:
            p = {**BASE, factor: value}
            for rsp in (True, False):
                sizes = [f"model.search_layers={p['layers']}", f"model.base_width={p['width']}"]
                run = {"steps": steps, "warmup": warmup, "batch": batch, "crop": p["size"], "device": "cpu"}
                specs[(factor, str(value), rsp)] = {"rsp": rsp, "overrides": sizes, **run}
    res = measure(specs, 1, args.quick)
    plot(res, args.plot)
    rows = []
    for f, v, rsp in res:
        on, off = res[(f, v, True)], res[(f, v, False)]
        if rsp:
            times = [f"{on['step_s']:.3f}", f"{off['step_s']:.3f}", f"{on['step_s'] / off['step_s']:.2f}"]
            mems = [
                f"{on['memory_mib']:.0f}",
                f"{off['memory_mib']:.0f}",
                f"{on['memory_mib'] / max(off['memory_mib'], 1e-9):.2f}",
            ]
            rows.append([LABEL[f], v.replace(", ", "x").strip("[]"), *times, *mems])
    header = (
        "factor | value | step RSP on (s) | step RSP off (s) | time on/off | mem on (MiB) | mem off (MiB) | mem on/off"
    )
    common.publish(
        args, "search_scaling", "Search step scaling (stage 1): depth, width, image size", "bench.search",
        f"Wall clock of the first-order bi-level step, batch {batch}, around L = {BASE['layers']}, "
        f"B = {BASE['width']}, {BASE['size'][0]}x{BASE['size'][1]}; median of {steps} steps after {warmup} warm-up,",
        "one process per point. Memory = growth of the process's peak RSS during the steps.", "",
        f"![search scaling](img/{PLOT.name})", "", common.md_table(header, rows),
    )  # fmt: skip
    return res


def plot(res: dict[tuple[str, str, bool], dict[str, Any]], path: Path) -> Path:
    """2 x 3 panels: step time / memory vs each factor (pixels for the image size), RSP on and off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for col, factor in enumerate(GRID):
        for rsp, style in ((True, "o-"), (False, "s--")):
            pts = sorted((math.prod(json.loads(v)) if factor == "size" else int(v), r["step_s"], r["memory_mib"])
                         for (f, v, on), r in res.items() if f == factor and on == rsp)  # fmt: skip
            for row, ys in enumerate(list(zip(*pts))[1:]):
                axes[row, col].plot([p[0] for p in pts], ys, style, label=f"RSP {'on' if rsp else 'off'}")
        axes[0, col].set_title(f"vs {LABEL[factor]}")
        axes[1, col].set_xlabel(LABEL[factor])
    axes[0, 0].set_ylabel("step wall time (s)")
    axes[1, 0].set_ylabel("peak RSS growth (MiB)")
    axes[0, 0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp := path.with_name(f".{path.name}.tmp.png"), dpi=90)
    plt.close(fig)
    return tmp.replace(path)  # atomic: a reader never sees half a picture


def run_macro(args: argparse.Namespace) -> dict[tuple[int, bool, bool], dict[str, Any]]:
    """Stage-2 step vs L, RSP and the shared-alignment cache (tiny preset, batch 4 of 64x128)."""
    layers, steps, warmup = ([2, 3], 1, 0) if args.quick else (args.layers, 5, 1)
    run = {"net": "macro", "steps": steps, "warmup": warmup, "batch": 4, "crop": [64, 128], "device": args.device}
    specs = {(n, rsp, reuse): {"rsp": rsp, "reuse": reuse, "overrides": [f"model.layers={n}"], **run}
             for n in layers for rsp in (True, False) for reuse in (True, False)}  # fmt: skip
    res = measure(specs, 1, args.quick)
    onoff = {True: "on", False: "off"}
    rows = [[n, onoff[rsp], onoff[reuse], r["align_calls"], r["params_m"], r["step_s"], r["cpu_s"],
             f"{r['memory_mib']:.1f}", f"{r['saved_mib']:.1f}"] for (n, rsp, reuse), r in res.items()]  # fmt: skip
    header = (
        "L | RSP | align cache | Align calls / forward | params (M) | step wall (s) | step CPU (s) | peak memory (MiB)"
    )
    common.publish(
        args, "macro_cost", "Macro search cost (stage 2) vs L, RSP, alignment cache", "bench.search",
        "Bi-level steps of `MacroSupernet` at the tiny preset (B = 8, scales 4/8/16/32), batch 4 of 64x128, one",
        "process per row. *Align calls / forward*: with the cache one 1x1 conv-BN + resize per (source node, target",
        "scale), without it one per (source node, target node). *Saved activations*: the distinct tensors autograd",
        "keeps for backward in one forward (weights excluded), deterministic.", "",
        common.md_table(header + " | saved activations (MiB)", rows),
    )  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> Any:
    """Parse arguments and run the chosen benchmark (default: the search-cost table)."""
    ap, argv = common.parser(__doc__, argv, worker)
    if ap is None:
        return {}
    ap.add_argument("--models", nargs="+", default=["tiny"], choices=list(PRESETS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scaling", action="store_true", help="stage-1 step vs depth, width, image size (+ plot)")
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--macro", action="store_true", help="stage-2 step vs L, RSP, alignment cache")
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--quick", action="store_true", help="smallest sizes, 1 step, in-process (seconds): the tests")
    args = common.parse(ap, argv)
    torch.set_num_threads(1)  # workers too (worker_main): oversubscribed OpenMP threads make timings meaningless
    if args.quick:
        args.repeats = 1
    return run_scaling(args) if args.scaling else run_macro(args) if args.macro else run_cost(args)


if __name__ == "__main__":
    main()
