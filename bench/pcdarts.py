"""Stage-1 search cost: RSP on/off, first/second order, and a PC-DARTS partial-channel peer (K = 4).

    .venv/bin/python -m bench.pcdarts [--model tiny] [--steps 6] [--repeats 3] [--quick] [--write]

PC-DARTS (Xu et al. 2020) sends only 1/K of each edge's channels through the MixedOp and
lets the rest bypass it, then shuffles channels (K groups) so that the next cell samples a
different part. Here that is `PCMixedOp`, dropped into the *same* `CellSupernet` (RSP off,
as PC-DARTS has no RSP) in place of every edge's MixedOp; edge normalisation (PC-DARTS'
second idea) is left out: it adds 2 scalars per cell and no measurable cost. Every row is a
fresh process; the table reports the median over `--repeats` interleaved rounds, so a burst
of load from other users of the machine hits all configurations alike.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import nn

from bench import common
from rspnet.search_space.cell import EDGES, SearchCell, channel_shuffle
from rspnet.search_space.ops import PRIMITIVES, make_op

NAME = "search_cost_peers"
VARIANTS = {  # label -> (rsp, partial-channel K or 0, second order)
    "RSP on": (True, 0, False),
    "RSP off": (False, 0, False),
    "RSP on, 2nd order": (True, 0, True),
    "RSP off, 2nd order": (False, 0, True),
    "PC-DARTS K=4 (RSP off)": (False, 4, False),
}


class PCMixedOp(nn.Module):
    """Partial-channel MixedOp: ops on the first C/K channels, the rest bypass; shuffle K groups."""

    def __init__(self, channels: int, k: int = 4, affine: bool = False) -> None:
        super().__init__()
        if channels % k:
            raise ValueError(f"partial channels need C divisible by K, got C={channels}, K={k}")
        self.k, self.part = k, channels // k
        self.ops = nn.ModuleList(make_op(name, self.part, affine) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights`: [num_ops] softmax of this edge's alpha row."""
        x_a, x_b = x[:, : self.part], x[:, self.part :]
        y = sum(w * op(x_a) for w, op in zip(weights, self.ops))
        return channel_shuffle(torch.cat([y, x_b], dim=1), self.k)


def partial_channel(net: nn.Module, k: int = 4) -> nn.Module:
    """Replace every SearchCell's MixedOps in `net` by PCMixedOp(K) (in place); returns `net`."""
    for cell in (m for m in net.modules() if isinstance(m, SearchCell)):
        cell.edges = nn.ModuleList(PCMixedOp(cell.channels, k) for _ in EDGES)
    return net


def build(spec: dict[str, Any]) -> tuple[nn.Module, Any]:
    """The stage-1 CellSupernet of `spec` (model preset, rsp, pc_k) and its composed config."""
    from rspnet.models.supernet import CellSupernet

    cfg = common.compose_cfg(f"model={spec['model']}", f"rsp={'on' if spec['rsp'] else 'off'}",
                             *spec.get("overrides", []))
    if not spec.get("pc_k"):
        return CellSupernet.from_cfg(cfg, int(cfg.dataset.num_classes)), cfg
    with torch.device("meta"):  # never allocate the full-width ops that partial_channel replaces
        net = partial_channel(CellSupernet.from_cfg(cfg, int(cfg.dataset.num_classes)), spec["pc_k"])
    return materialise(net), cfg


def materialise(net: nn.Module) -> nn.Module:
    """Allocate a meta-device supernet on CPU with the modules' own initialisation."""
    net = net.to_empty(device="cpu")
    for m in net.modules():
        if m is not net and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_(0.0, 1e-3)  # CellSupernet's alpha init
    return net


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration (in its own process)."""
    net, cfg = build(spec)
    size = spec.get("crop") or list(cfg.dataset.crop_size)
    batch = spec.get("batch") or int(cfg.dataset.batch_size)
    device = spec.get("device", "cpu")
    res = common.measure_search(net, batch, size, int(cfg.dataset.num_classes), spec["steps"], spec["warmup"],
                                spec["second_order"], device, amp=device == "cuda")
    return {**res, "batch": batch, "crop": list(size)}


def run(model: str, steps: int, warmup: int, repeats: int, device: str, batch: int | None = None,
        crop: list[int] | None = None, variants: list[str] | None = None, inprocess: bool = False) -> dict[str, dict[str, Any]]:
    """Every variant `repeats` times (interleaved); per variant the median step time and memory."""
    names = variants or list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for n in names:
            rsp, k, second = VARIANTS[n]
            spec = {"model": model, "rsp": rsp, "pc_k": k, "second_order": second, "steps": steps,
                    "warmup": warmup, "device": device, "batch": batch, "crop": crop}
            try:
                runs[n].append(common.run_worker("bench.pcdarts", spec, inprocess=inprocess))
            except RuntimeError as e:  # e.g. out of memory at the paper preset: keep the other rows
                errors[n] = str(e).splitlines()[-1][:120]
    out = {n: {"step_s": common.median([r["step_s"] for r in rs]),
               "memory_mib": common.median([r["memory_mib"] for r in rs]),
               "params_m": rs[0]["params_m"], "batch": rs[0]["batch"], "crop": rs[0]["crop"]}
           for n, rs in runs.items() if rs}
    if not out:
        raise RuntimeError(f"every variant failed: {errors}")
    return out | {n: {"error": msg} for n, msg in errors.items() if n not in out}


def table(res: dict[str, dict[str, Any]], device: str) -> str:
    """Rows per variant, with time and memory relative to RSP off (same order)."""
    mem = "peak CUDA memory (MiB)" if device == "cuda" else "peak RSS growth (MiB)"
    off = {False: res.get("RSP off"), True: res.get("RSP off, 2nd order")}
    off = {k: v for k, v in off.items() if v and "error" not in v}
    rows = []
    for n, r in res.items():
        if "error" in r:
            rows.append([n, "-", f"failed: {r['error']}", "-", "-", "-"])
            continue
        ref = off.get(VARIANTS[n][2])
        rel = (f"{r['step_s'] / ref['step_s']:.2f}", f"{r['memory_mib'] / max(ref['memory_mib'], 1e-9):.2f}") if ref else ("", "")
        rows.append([n, f"{r['params_m']:.3f}", f"{r['step_s']:.3f}", f"{r['memory_mib']:.0f}", *rel])
    return common.md_table(["variant", "params (M)", "step (s)", mem, "time / RSP off", "memory / RSP off"], rows)


def section(res: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    r = next(v for v in res.values() if "error" not in v)
    return "\n".join([
        f"## Stage-1 search cost: RSP on/off, first/second order, PC-DARTS peer (model={args.model})",
        "",
        common.device_line(threads=1),
        f"Command: `{command}`",
        "",
        f"One bi-level step = arch step + weight step (`bench.common.search_step`, what `SearchModule`",
        f"does per batch, without Lightning) of the stage-1 `CellSupernet`, batch {r['batch']} of",
        f"{r['crop'][0]}x{r['crop'][1]} random images; median of {args.steps} timed steps after {args.warmup}",
        f"warm-up, then the median over {args.repeats} fresh processes per row. Memory: CPU = growth of",
        "the process's peak RSS over the timed steps (activations, gradients, optimiser state);",
        "CUDA = allocator peak (bf16 autocast). Target (issue 9): RSP on <= 0.6x time and <= 0.5x",
        "memory of RSP off.",
        "",
        table(res, args.device),
    ])


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse arguments, run the variants, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    if common.worker_main(argv, worker):
        return {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--crop", type=int, nargs=2, default=None)
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--quick", action="store_true", help="smallest config, in-process (seconds): for the tests")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # workers too (worker_main); oversubscribed OpenMP threads make timings meaningless
    if args.quick:
        args.steps, args.warmup, args.repeats, args.batch, args.crop = 1, 1, 1, 1, [32, 64]
    variants = ["RSP on", "RSP off", "PC-DARTS K=4 (RSP off)"] if args.quick else None
    res = run(args.model, args.steps, args.warmup, args.repeats, args.device, args.batch, args.crop, variants,
              inprocess=args.quick)
    print(table(res, args.device))
    if args.write:
        common.write_section(args.write, f"{NAME}_{args.model}", section(res, args, common.command_line("bench.pcdarts", argv)))
    return res


if __name__ == "__main__":
    main()
