"""Does the cell search decide anything at CPU budgets? Search-recipe attempts, one row each (issue 13).

    python -m experiments.search_decide --root ../shared/data/camvid --out outputs/camvid_study/decide
    python -m experiments.search_decide --debug --out outputs/search_decide_debug      # synthetic, a minute

Runs the study's cell search (`experiment=camvid_study`, the identical data and budget) for every
attempt (`--attempt NAME=OVERRIDE[,OVERRIDE...]`) and search seed, resumable (one folder and a `done`
marker per job), and writes a table: per attempt the mean normalised alpha entropy (1 = uniform),
the mean top-1 op weight, the mean margin top-1 minus top-2, the genotypes, and how many edges the
seeds agree on (chance: 1 in 5 per edge). None of these numbers looks at CamVid val: an attempt is
chosen by its decisiveness and seed agreement on train, before any architecture is trained.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from experiments.camvid_study import DEBUG, Job, named_overrides, run_study

ATTEMPTS = [  # the study's attempts (docs/results.md), in the order they were run
    "adam001=search.arch_adam_lr=0.01",
    "adam003=search.arch_adam_lr=0.03",
    "adam01=search.arch_adam_lr=0.1",
    "adam003_wu5=search.arch_adam_lr=0.03,search.warmup_epochs=5",
]


def parse_attempt(spec: str) -> tuple[str, list[str]]:
    """`NAME=OVERRIDE[,OVERRIDE...]` -> (name, overrides); one clear error otherwise."""
    return named_overrides(spec, f"search_decide: error: --attempt {spec}")


def plan(args: argparse.Namespace) -> list[Job]:
    """One cell-search job per (attempt, seed), named `cell_<attempt>_s<seed>`."""
    base = ["experiment=camvid_study", *args.overrides]
    base += DEBUG if args.debug else [f"dataset.root={Path(args.root).resolve()}"]
    jobs = []
    for spec in args.attempt or ATTEMPTS:
        name, overrides = parse_attempt(spec)
        for s in args.seeds:
            argv = [*base, "stage=cell_search", f"seed={s}", f"trainer.max_epochs={args.epochs}", *overrides]
            jobs.append(Job(f"cell_{name}_s{s}", "rspnet", lambda d, a=argv: a))
    return jobs


def edge_stats(genotype: dict[str, Any]) -> dict[str, Any]:
    """Entropy, top-1 weight and top-1 minus top-2 margin of each edge's softmax(alpha), and the ops."""
    tops, margins = [], []
    for e in genotype["edges"]:
        w = sorted(e["weights"], reverse=True)
        tops.append(w[0])
        margins.append(w[0] - w[1])
    return {
        "entropy": genotype["search"]["alpha_entropy"]["mean"],
        "top1": statistics.fmean(tops),
        "margin": statistics.fmean(margins),
        "ops": [e["op"] for e in genotype["edges"]],
    }


def agreement(ops: list[list[str]]) -> float:
    """Mean over seed pairs of the fraction of edges with the same op (1 = every seed found the same cell)."""
    pairs = list(itertools.combinations(ops, 2))
    if not pairs:
        return float("nan")
    return statistics.fmean(sum(a == b for a, b in zip(x, y)) / len(x) for x, y in pairs)


def table(out: Path, jobs: list[Job]) -> str:
    """Markdown: one row per attempt (seeds pooled), from the finished jobs' genotype.json and done markers."""
    rows: dict[str, list[tuple[dict, dict]]] = {}
    for job in jobs:
        attempt = job.name.rsplit("_s", 1)[0].removeprefix("cell_")
        g, done = out / job.name / "genotype.json", out / job.name / "done"
        if g.is_file() and done.is_file():
            rows.setdefault(attempt, []).append((edge_stats(json.loads(g.read_text())), json.loads(done.read_text())))
    lines = [
        "| attempt | overrides | seeds | alpha entropy (mean) | top-1 weight | margin top-1 - top-2 | "
        "seed agreement (edges) | cells (edges 0-1, 0-2, 1-2) | wall / CPU per search (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    overrides = {
        job.name.rsplit("_s", 1)[0].removeprefix("cell_"): " ".join(a for a in job.args(out) if a.startswith("search."))
        for job in jobs
        if job.args
    }
    for attempt, recs in rows.items():
        stats, dones = [r[0] for r in recs], [r[1] for r in recs]
        cells = "; ".join("/".join(s["ops"]) for s in stats)
        wall = statistics.fmean(d["wall_s"] for d in dones) / 60
        cpu = statistics.fmean(d["cpu_s"] for d in dones) / 60
        lines.append(
            f"| {attempt} | `{overrides.get(attempt, '')}` | {len(recs)} | {_mean(stats, 'entropy'):.3f} | "
            f"{_mean(stats, 'top1'):.3f} | {_mean(stats, 'margin'):.3f} | {agreement([s['ops'] for s in stats]):.2f} | "
            f"{cells} | {wall:.1f} / {cpu:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _mean(stats: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(s[key] for s in stats)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/data/camvid", help="CamVid root (SegNet layout)")
    ap.add_argument("--out", type=Path, default=Path("outputs/camvid_study/decide"))
    ap.add_argument(
        "--attempt",
        action="append",
        default=[],
        metavar="NAME=OVERRIDE[,OVERRIDE...]",
        help=f"a search recipe to try (repeatable; default: {' '.join(ATTEMPTS)})",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=15, help="cell-search epochs (the study's --search-epochs)")
    ap.add_argument("--jobs", type=int, default=1, help="searches run at once (see camvid_study --jobs)")
    ap.add_argument("--debug", action="store_true", help="synthetic data, 1 epoch of 2 batches")
    ap.add_argument("--table", type=Path, help="write the table here too (default: OUT/decide.md)")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides for every job")
    args = ap.parse_args(argv)
    if args.debug:
        args.epochs = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.debug and not Path(args.root).is_dir():
        print(
            f"search_decide: error: --root {args.root}: no such folder; pass the CamVid (SegNet layout) root",
            file=sys.stderr,
        )
        return 2
    jobs = plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    status = run_study(jobs, args.out, workers=args.jobs)
    text = table(args.out, jobs)
    for path in (args.out / "decide.md", args.table):
        if path:
            path.write_text(text)
    print(text)
    return 1 if status["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
