"""CPU speed beside accuracy at CamVid's 480x360 (issue 25): our nets vs the same-recipe ENet, in one run.

    python -m bench.camvid_speed [--arch NAME=GENOTYPE[,MACRO] ...] [--eval-scale 0.75] [--rounds 6] [--repeats 5] [--write]
    # every searched net of a recipe's runs or records (one --arch per pipeline folder):
    python -m bench.camvid_speed --eval-scale 0.75 --pipelines experiments/records/camvid_full/phase_c

Every network is built as `stage=train` builds it (the `net` group: ours from a genotype + macro.json at
the tiny preset of `experiment=camvid`, ENet from `net=enet`; CamVid's 11 classes), random weights (speed
does not depend on them), eval mode, batch 1, fp32, a 480x360 input, torch threads by the project's thread
policy (`rspnet.utils.threads`: the usable cores, 2 on the 2-core machine). Each round gives every net
one untimed warm-up and `--repeats` timed forwards, the nets alternating round by round so a burst of load
from other processes hits all of them. Reported per net: median wall ms with quartiles (what a user
waits for), median process CPU ms beside it (all threads), params and GMACs (`models/cost.count_gflops`
/ 2: multiply-accumulates of conv / matmul ops). Default nets: the architecture `experiment=camvid`
trains (`experiments/genotypes/camvid_tiny_s0*.json`) and ENet; `--arch` adds searched ones (e.g. the
genotype.json + macro.json of each seed of a recipe run); `--pipelines DIR` adds every pipeline folder under
DIR that has both (`cell_search/genotype.json`, `macro_search/macro.json`), named `FOLDER (DIR's name)`. `--eval-scale S` times what inference at
`dataset.eval_scale=S` costs per frame: the forward at the scaled size (e.g. 270x360 for 0.75) and the
logits' upsampling back to the frame, as eval scores them (`models.layers.at_label`); GMACs at that size.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench import common
from rspnet.architecture import configured_net
from rspnet.errors import ConfigError
from rspnet.inference import infer
from rspnet.models.cost import count_gflops
from rspnet.models.layers import resize
from rspnet.stages.pipeline import searched_artifacts
from rspnet.utils import threads

GENOTYPES = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"
DEFAULT_ARCH = (
    f"rspnet (experiment=camvid)={GENOTYPES / 'camvid_tiny_s0.json'},{GENOTYPES / 'camvid_tiny_s0_macro.json'}"
)
RECIPE = ("experiment=camvid", "dataset=camvid", "dataset.num_workers=0")


def build(arch: str, size: tuple[int, int]) -> tuple[str, torch.nn.Module, Any]:
    """(name, net in eval mode, its composed config) for `NAME=GENOTYPE[,MACRO]` or `NAME=net:ENTRY` (a net group entry)."""
    name, sep, files = arch.rpartition("=")  # a NAME may itself hold "=" (e.g. "ENet (net=enet)")
    if not sep or not files:
        raise ConfigError(f"--arch {arch}: use NAME=GENOTYPE[,MACRO] or NAME=net:ENTRY (e.g. enet=net:enet)")
    if files.startswith("net:"):
        overrides = [f"net={files[4:]}"]
    else:
        genotype, _, macro = files.partition(",")
        overrides = [f"genotype={genotype}", *([f"macro_arch={macro}"] if macro else [])]
    cfg = common.compose_cfg(*RECIPE, *overrides, f"dataset.crop_size=[{size[0]},{size[1]}]")
    torch.manual_seed(0)
    net = configured_net(cfg, int(cfg.dataset.num_classes))
    return name, net.eval(), cfg


def pipeline_archs(root: Path) -> list[str]:
    """`NAME=GENOTYPE,MACRO` for every pipeline folder under `root` whose searches both wrote their artifact."""
    if not root.is_dir():
        raise ConfigError(f"--pipelines {root}: not a folder")
    archs = []
    for found in sorted(root.rglob("cell_search/genotype.json")):  # a pipeline folder's cell search
        folder = found.parent.parent
        genotype, macro = searched_artifacts(folder)
        if macro.is_file():
            archs.append(f"{folder.name} ({root.name})={genotype},{macro}")
    if not archs:
        raise ConfigError(
            f"--pipelines {root}: no pipeline folder under it (cell_search/genotype.json with macro_search/macro.json)"
        )
    return archs


def scaled(size: tuple[int, int], eval_scale: float) -> tuple[int, int]:
    """The network input of a `size` frame at `dataset.eval_scale` (rounded to whole pixels)."""
    return (max(1, round(size[0] * eval_scale)), max(1, round(size[1] * eval_scale)))


def measure(
    archs: Sequence[str], size: tuple[int, int], rounds: int, repeats: int, eval_scale: float = 1.0
) -> list[dict[str, Any]]:
    """One row per net: params, GMACs, wall/CPU ms per `size` frame over `rounds` alternating rounds; at an
    `eval_scale` other than 1 the forward runs at the scaled size and the logits are upsampled to `size`."""
    inp = scaled(size, eval_scale)
    nets = [build(a, inp) for a in archs]
    plan = threads.apply(nets[0][2])
    x = torch.randn(1, 3, *inp)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in nets}

    def frame(net: torch.nn.Module) -> torch.Tensor:  # eval's inference path, then the logits at the frame
        logits = infer(net, x)
        return logits if logits.shape[-2:] == size else resize(logits, size)

    with torch.inference_mode():
        for _ in range(rounds):
            for name, net, _ in nets:
                times[name] += common.time_calls(lambda net=net: frame(net), steps=repeats, warmup=1)
    rows = []
    for name, net, _ in nets:
        wall = [1000 * w for w, _ in times[name]]
        cpu = [1000 * c for _, c in times[name]]
        q1, _, q3 = statistics.quantiles(wall, n=4) if len(wall) > 1 else (wall[0], None, wall[0])
        rows.append(
            {
                "net": name,
                "params": sum(p.numel() for p in net.parameters()),
                "gmacs": count_gflops(net, inp) / 2,
                "wall_ms": common.median(wall),
                "wall_q1": q1,
                "wall_q3": q3,
                "cpu_ms": common.median(cpu),
                "calls": len(wall),
                "threads": plan.intra_op,
                "input": inp,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap, argv = common.parser(__doc__, argv)
    ap.add_argument("--arch", action="append", default=[], help="NAME=GENOTYPE[,MACRO] or NAME=net:ENTRY (repeat)")
    ap.add_argument(
        "--pipelines",
        type=Path,
        action="append",
        default=[],
        help="a run or records folder: every pipeline's searched net under it (repeat)",
    )
    ap.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"), help="input (default 360 480)")
    ap.add_argument(
        "--eval-scale", type=float, default=1.0, help="inference scale (dataset.eval_scale; default 1: the frame)"
    )
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards per net per round (default 5)")
    args = common.parse(ap, argv)
    if min(args.rounds, args.repeats) < 1:
        ap.error("--rounds and --repeats must be >= 1")
    if not args.eval_scale > 0:
        ap.error("--eval-scale must be > 0 (1 = the frame's own size)")
    try:
        found = [a for root in args.pipelines for a in pipeline_archs(root)]
        archs = [DEFAULT_ARCH, *args.arch, *found, "ENet (net=enet)=net:enet"]
        rows = measure(archs, (args.size[0], args.size[1]), args.rounds, args.repeats, args.eval_scale)
    except ConfigError as e:
        sys.exit(f"camvid_speed: error: {e}")
    table = common.md_table(
        "net | params | GMACs | wall ms / frame (median) | wall quartiles | CPU ms / frame (median) | timed calls",
        [
            [
                r["net"],
                f"{r['params']:,}",
                f"{r['gmacs']:.3f}",
                f"{r['wall_ms']:.1f}",
                f"{r['wall_q1']:.1f} – {r['wall_q3']:.1f}",
                f"{r['cpu_ms']:.1f}",
                r["calls"],
            ]
            for r in rows
        ],
    )
    inp = rows[0]["input"]
    at = (
        f" at eval_scale {args.eval_scale:g}: the forward at {inp[0]}x{inp[1]} and the logits upsampled to the frame"
        if inp != tuple(args.size)
        else ""
    )
    text = (
        f"Batch 1, fp32, frame {args.size[0]}x{args.size[1]} (H x W){at}, random weights, eval mode, "
        f"{rows[0]['threads']} torch threads (the thread policy); {args.rounds} rounds x {args.repeats} "
        "timed forwards per net, nets alternating round by round. CPU time is the process's (all threads)."
    )
    common.publish(
        args,
        "camvid_speed",
        "CamVid 480x360: CPU latency of ours vs ENet",
        "bench.camvid_speed",
        text,
        "",
        table,
        threads=rows[0]["threads"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
