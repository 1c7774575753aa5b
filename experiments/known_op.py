"""Does cell selection find an op that is right by construction? The known-op task over seeds (issue 24).

    python -m experiments.known_op --seeds 10 --out outputs/known_op --table outputs/known_op/known_op.md

Runs the real cell search (`rspnet stage=cell_search experiment=known_op`, in this process through
`rspnet.composition.run`) once per seed in real and in null mode (`search.null=true`: the arch half's
and the scoring set's labels are i.i.d. random), with `search.select=perturb`. One search gives both
read-outs: the genotype's op (perturbation, DARTS-PT) and the argmax of its softmax(alpha) weights
(what `search.select=argmax` writes: selection runs after the search and never changes it). The
right op is conv_5x5 on edge 0->2 (data/known_op.py says why); the table gives every seed's pick on
that edge, the hit rates, and the split-half reliability of the perturbation scores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rspnet.data.known_op import RIGHT_OP
from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES

EDGE = [f"{a}->{b}" for a, b in EDGES].index(RIGHT_OP["edge"])
SHORT = {"conv_3x3": "c3", "dw_conv_3x3": "dw3", "conv_5x5": "c5", "dil_conv_3x3": "dil3", "skip_connect": "skip"}
MODES = ("real", "null")


def search(out: Path, seed: int, null: bool, overrides: list[str]) -> dict[str, Any]:
    """One known-op cell search; -> picks (perturb, argmax) on every edge, split-half, margin, wall time."""
    from rspnet.composition import run

    start = time.perf_counter()
    run(
        "cell_search",
        "experiment=known_op",
        f"seed={seed}",
        f"search.null={str(null).lower()}",
        f"paths.output_dir={out}",
        *overrides,
    )
    genotype = json.loads((out / "genotype.json").read_text())
    perturb = genotype["search"]["evidence"]["perturb"]
    return {
        "perturb": [e["op"] for e in genotype["edges"]],
        "argmax": [PRIMITIVES[max(range(len(e["weights"])), key=e["weights"].__getitem__)] for e in genotype["edges"]],
        "split_half": perturb["split_half"]["spearman"],
        "alpha_split_half": genotype["search"]["evidence"]["alpha"]["split_half"]["spearman"],
        "score_margin": perturb["decisiveness"]["per_row"][EDGE]["margin"],
        "wall_s": time.perf_counter() - start,
    }


def hit(ops: list[str]) -> bool:
    """The decisive edge holds the right op."""
    return ops[EDGE] == RIGHT_OP["op"]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(results: dict[str, list[dict[str, Any]]], seeds: list[int]) -> str:
    """Markdown: one row per seed (picks on the decisive edge, whole cells), then hit rates and means."""
    head = (
        "| seed | real perturb | real argmax | null perturb | null argmax | real cell (perturb) | null cell (perturb) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    real, null = results["real"], results["null"]
    for s, r, n in zip(seeds, real, null):
        cells = ["/".join(SHORT[o] for o in x["perturb"]) for x in (r, n)]
        picks = [SHORT[x[k][EDGE]] for x in (r, n) for k in ("perturb", "argmax")]
        lines.append(f"| {s} | {picks[0]} | {picks[1]} | {picks[2]} | {picks[3]} | {cells[0]} | {cells[1]} |")
    rates = [f"**{sum(hit(x[k]) for x in results[m])}/{len(seeds)}**" for m in MODES for k in ("perturb", "argmax")]
    lines.append(f"| hits ({RIGHT_OP['op']} on {RIGHT_OP['edge']}) | {' | '.join(rates)} | | |")
    sh = [_fmt(_mean([x[key] for x in results[m]])) for m in MODES for key in ("split_half", "alpha_split_half")]
    lines.append(f"| split-half Spearman (mean) | {' | '.join(sh)} | | |")
    wall = statistics.fmean(x["wall_s"] for m in MODES for x in results[m])
    return "\n".join(lines) + f"\n\nMean wall time per search: {wall:.1f} s.\n"


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="searches per mode: seeds 0..N-1")
    ap.add_argument("--out", type=Path, default=Path("outputs/known_op"), help="one run folder per search")
    ap.add_argument("--table", type=Path, help="write the table here too (default: OUT/known_op.md)")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides for every search")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = list(range(args.seeds))
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for mode in MODES:
        for s in seeds:
            r = search(args.out / f"{mode}_s{s}", s, mode == "null", args.overrides)
            results[mode].append(r)
            print(f"{mode} seed {s}: perturb {r['perturb']} argmax {r['argmax']} ({r['wall_s']:.0f} s)", flush=True)
    text = table(results, seeds)
    (args.out / "known_op.json").write_text(json.dumps(results, indent=1))
    for path in (args.out / "known_op.md", args.table):
        if path:
            path.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
