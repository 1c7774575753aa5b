"""Results page of the CamVid study: docs/results.md and its pictures, from the run folders alone.

    python -m experiments.results --study outputs/camvid_study --out docs/results.md

Reads OUT/study.json (the plan written by experiments.camvid_study), every arm's eval
metrics.json / train.json / checkpoint metadata and the `done` markers' timings. Writes the
table of every arm (val mIoU mean ± std over training seeds, params, GFLOPs, wall and CPU time),
the searched arms' rank among the random ones, the search's entropies, and pictures under
--img (default: docs/img/results next to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

GROUP_COLOURS = {
    "random": "tab:grey",
    "searched": "tab:red",
    "variant": "tab:orange",
    "ablation": "tab:blue",
    "baseline": "tab:green",
}


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def gflops_of(ckpt: Path) -> float | None:
    """GFLOPs of an rspnet training checkpoint's network at its crop size (built on the meta device)."""
    from omegaconf import OmegaConf

    from rspnet.genotype import Genotype, MacroArch
    from rspnet.models.cost import summarize
    from rspnet.utils.checkpoint import read_checkpoint

    meta = read_checkpoint(ckpt).get("rspnet") or {}
    if "network" in meta or "genotype" not in meta:
        return None
    cfg = OmegaConf.create(meta["config"])
    return summarize(cfg, Genotype.from_dict(meta["genotype"]), MacroArch.from_dict(meta["macro"]))["gflops"]


def run_record(study: Path, run: str) -> dict[str, Any]:
    """mIoU, params, GFLOPs, wall/CPU seconds (train + eval) of one training run; missing values None."""
    d = study / run
    metrics = _json(d / "eval" / "metrics.json") or _json(d / "metrics.json")  # rspnet arm | baseline
    train = _json(d / "train.json") or {}
    timing = [m for m in (_json(d / "done"), _json(d / "eval" / "done")) if m]
    ckpt = d / "checkpoints" / "last.ckpt"
    gflops = train.get("gflops")
    if gflops is None and ckpt.is_file() and metrics:
        gflops = gflops_of(ckpt)
    return {
        "miou": (metrics or {}).get("miou"),
        "params": train.get("params"),
        "gflops": gflops,
        "wall_s": sum(m["wall_s"] for m in timing) if timing else None,
        "cpu_s": sum(m["cpu_s"] for m in timing) if timing else None,
        "provenance": (metrics or {}).get("arch_provenance") or train.get("arch_provenance"),
        "dir": run,
        "dataset": (metrics or {}).get("dataset"),
    }


def arm_rows(study: Path, plan: dict) -> list[dict[str, Any]]:
    """One row per arm: per-seed records and their summaries."""
    rows = []
    for arm in plan["arms"]:
        runs = [run_record(study, run) for run in arm["runs"].values()]
        mious = [r["miou"] for r in runs if r["miou"] is not None]
        first = next((r for r in runs if r["params"] is not None), runs[0] if runs else {})
        search = [_json(study / j / "done") for j in arm["search_jobs"]]
        rows.append(
            arm
            | {
                "records": runs,
                "mious": mious,
                "mean": statistics.fmean(mious) if mious else None,
                "std": statistics.stdev(mious) if len(mious) > 1 else None,
                "params": first.get("params"),
                "gflops": first.get("gflops"),
                "wall_s": _mean([r["wall_s"] for r in runs]),
                "cpu_s": _mean([r["cpu_s"] for r in runs]),
                "search_wall_s": sum(s["wall_s"] for s in search if s) if any(search) else None,
            }
        )
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _dataset(rows: list[dict]) -> str:
    """The evaluated dataset's name (from the first metrics.json), e.g. camvid."""
    return next((r["records"][0]["dataset"] for r in rows if r["records"] and r["records"][0].get("dataset")), "?")


def verdict(rows: list[dict]) -> list[dict[str, Any]]:
    """Per searched arm: rank among the random arms (1 = best), difference to their mean, their 90th percentile."""
    random = [r["mean"] for r in rows if r["group"] == "random" and r["mean"] is not None]
    searched = [(r["name"], r["mean"]) for r in rows if r["group"] == "searched" and r["mean"] is not None]
    if not random or not searched:
        return []
    if len(searched) > 1:  # the search as a method: its search seeds' arms averaged
        searched.append(("all search seeds (mean of the arms)", statistics.fmean(m for _, m in searched)))
    mean, p90 = statistics.fmean(random), float(np.percentile(random, 90))
    return [
        {"arm": name, "miou": m, "rank": 1 + sum(v > m for v in random), "of": len(random) + 1, "random_mean": mean,
         "diff": m - mean, "p90": p90, "goal_met": m - mean >= 0.01 and m > p90}
        for name, m in searched
    ]  # fmt: skip


def seed_spread(rows: list[dict]) -> float | None:
    """Mean over the arms with >= 2 training seeds of their std: the noise a difference between arms must beat."""
    stds = [r["std"] for r in rows if r["std"] is not None]
    return statistics.fmean(stds) if stds else None


def search_rows(study: Path, plan: dict) -> list[list[Any]]:
    """Search jobs: time and the entropies that say whether the search decided anything."""
    rows = []
    for job in plan["jobs"]:
        name = job["name"]
        if not name.startswith("search/"):
            continue
        done = _json(study / name / "done")
        art = _json(study / name / "genotype.json") or _json(study / name / "macro.json") or {}
        s = art.get("search", {})
        ent = s["alpha_entropy"]["mean"] if "alpha_entropy" in s else s.get("path_entropy")
        what = "cell (alpha)" if "alpha_entropy" in s else f"macro ({s.get('scoring', '?')} path scores)" if s else "-"
        rows.append(
            [
                name,
                what,
                _fmt(ent, 3),
                _fmt(s.get("beta_entropy"), 3),
                s.get("epochs", "-"),
                _fmt(done and done["wall_s"] / 60, 1),
                _fmt(done and done["cpu_s"] / 60, 1),
            ]
        )
    return rows


def decide_section(study: Path) -> list[str]:
    """The search-recipe attempts (experiments.search_decide, run into STUDY/decide) and the searched cells' agreement."""
    from experiments.search_decide import agreement

    lines = []
    attempts = study / "decide" / "decide.md"
    if attempts.is_file():
        lines += [
            "### Search-recipe attempts (cell search only, before any training)",
            "",
            "Each attempt a row (`python -m experiments.search_decide`): decisiveness and agreement between search "
            "seeds, measured on train only; the study's recipe was chosen from this table, not from val.",
            "",
            attempts.read_text().strip(),
            "",
        ]
    cells = [_json(study / f"search/cell_s{s}" / "genotype.json") for s in range(2)]
    if all(cells):
        ops = [[e["op"] for e in c["edges"]] for c in cells]
        lines += [
            f"The study's two cell searches (seeds 0, 1) agree on {agreement(ops):.0%} of the edges "
            f"({' / '.join(ops[0])} vs {' / '.join(ops[1])}; chance: 20 % per edge).",
            "",
        ]
    return lines


def _fmt(v: Any, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if v is None or v is False else f"{v * scale:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def figures(study: Path, rows: list[dict], img: Path) -> dict[str, Path]:
    """Strip plot, mIoU vs params, searched cell and trellis, prediction overlays -> files in `img`."""
    from rspnet.genotype import Genotype, MacroArch
    from rspnet.viz import new_figure, save_figure
    from rspnet.viz.cell import cell_figure
    from rspnet.viz.trellis import trellis_figure

    img.mkdir(parents=True, exist_ok=True)
    pics: dict[str, Path] = {}
    groups = [g for g in GROUP_COLOURS if any(r["group"] == g and r["mious"] for r in rows)]
    fig = new_figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    for x, g in enumerate(groups):
        for r in (r for r in rows if r["group"] == g and r["mious"]):
            at = x + rng.uniform(-0.25, 0.25)  # one position per arm: its seeds and its mean line up
            ax.scatter(np.full(len(r["mious"]), at), 100 * np.array(r["mious"]), s=16, alpha=0.6, c=GROUP_COLOURS[g])
            ax.plot([at - 0.06, at + 0.06], [100 * r["mean"]] * 2, c="black", lw=1.5)
            if g != "random":
                ax.annotate(r["name"], (at + 0.08, 100 * r["mean"]), fontsize=7)
    random = [100 * r["mean"] for r in rows if r["group"] == "random" and r["mean"] is not None]
    if random:
        ax.axhline(float(np.mean(random)), ls="--", c="tab:grey", lw=0.8, label="random mean")
        ax.axhline(float(np.percentile(random, 90)), ls=":", c="tab:grey", lw=0.8, label="random 90th pct")
        ax.legend(fontsize=7, loc="best")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("val mIoU (%)  (dots: seeds, bars: arm mean)")
    ax.set_title(f"searched vs random architectures ({_dataset(rows)} val)")
    pics["strip"] = save_figure(fig, img / "strip.png")
    fig = new_figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    for r in rows:
        if r["mean"] is not None and r["params"]:
            ax.scatter([r["params"] / 1e6], [100 * r["mean"]], c=GROUP_COLOURS[r["group"]], s=30, label=r["group"])
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per group
    if unique:
        ax.legend(list(unique.values()), list(unique.keys()), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (M, log)")
    ax.set_ylabel("val mIoU (%)")
    pics["params"] = save_figure(fig, img / "miou_vs_params.png")
    arch = study / "arch" / "searched_s0"
    if (arch / "genotype.json").is_file() and (arch / "macro.json").is_file():
        pics["cell"] = save_figure(
            cell_figure(Genotype.load(arch / "genotype.json"), "searched Norm-Cell (search seed 0)"),
            img / "searched_cell.png",
        )
        pics["trellis"] = save_figure(
            trellis_figure(MacroArch.load(arch / "macro.json"), "searched trellis (search seed 0)"),
            img / "searched_trellis.png",
        )
    for r in rows:
        if r["group"] in ("searched", "random") and r["records"]:
            for png in sorted((study / r["records"][0]["dir"] / "predict" / "predictions" / "overlay").glob("*.png"))[
                :3
            ]:
                dst = img / f"overlay_{r['name']}_{png.name}"
                shutil.copyfile(png, dst)
                pics[f"overlay {r['name']} {png.stem}"] = dst
    return pics


def render(study: Path, out: Path, img: Path) -> str:
    """The markdown page (pictures written to `img`)."""
    from bench.common import device_info

    plan = _json(study / "study.json")
    if plan is None:
        raise SystemExit(
            f"results: error: {study / 'study.json'} not found; run python -m experiments.camvid_study first"
        )
    rows = arm_rows(study, plan)
    pics = figures(study, rows, img)
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    info = device_info()
    lines = ["# Does the search matter? CamVid: searched vs random architectures", ""]
    if plan.get("debug"):
        lines += [
            "> **PLACEHOLDER produced by `--debug`** (synthetic data, 1 epoch, 2 batches): these numbers "
            "are a dry run of the pipeline and say nothing about the search.",
            "",
        ]
    lines += [
        f"Study: `{plan['command']}` — epochs {plan['epochs']}. Page: `python -m experiments.results --study {study} --out {out}` "
        f"on {info['cpu']} ({info['cores']} cores), {info['date']}.",
        "",
        f"mIoU: {_dataset(rows)} **val** (never used during search or training: macro path scores come from the arch half "
        "of train, and the *last* checkpoint of every run is evaluated once). Mean ± std over training seeds; "
        "wall/CPU time: train + eval of one run (CPU = user + system of the job's process tree).",
        "",
    ]
    if "--jobs" in plan["command"]:
        lines += [
            "The study ran jobs side by side (`--jobs`): each wall time includes waiting for the CPU the other job "
            "held, so compare arms by CPU time; wall times are upper bounds of a run alone.",
            "",
        ]
    lines += [
        "Random arms are parameter-matched (±20 %) to `searched_s0`; `searched_s1` (another search seed) may fall "
        "outside that band — its params are in the table.",
        "",
    ]
    table = [
        [
            r["name"],
            r["group"],
            r["label"],
            len(r["mious"]),
            f"{_fmt(r['mean'], 2, 100)} ± {_fmt(r['std'], 2, 100)}"
            if r["std"] is not None
            else _fmt(r["mean"], 2, 100),
            _fmt(r["params"] and r["params"] / 1e6, 3),
            _fmt(r["gflops"], 3),
            _fmt(r["wall_s"] and r["wall_s"] / 60, 1),
            _fmt(r["cpu_s"] and r["cpu_s"] / 60, 1),
        ]
        for r in rows
    ]
    lines += [
        "## Every arm",
        "",
        _table(
            ["arm", "group", "what", "seeds", "val mIoU (%)", "params (M)", "GFLOPs", "wall (min)", "CPU (min)"], table
        ),
        "",
    ]
    v = verdict(rows)
    lines += ["## Searched vs random", ""]
    if v:
        lines += [
            _table(
                [
                    "searched arm",
                    "mIoU (%)",
                    "rank among random",
                    "random mean (%)",
                    "difference (points)",
                    "random 90th pct (%)",
                    "goal (≥ +1.0 and > p90)",
                ],
                [
                    [
                        x["arm"],
                        _fmt(x["miou"], 2, 100),
                        f"{x['rank']} of {x['of']}",
                        _fmt(x["random_mean"], 2, 100),
                        f"{100 * x['diff']:+.2f}",
                        _fmt(x["p90"], 2, 100),
                        "met" if x["goal_met"] else "not met",
                    ]
                    for x in v
                ],
            ),
            "",
        ]
        spread = seed_spread(rows)
        if spread is not None:
            lines += [
                f"Training-seed noise: the arms trained with 2 seeds differ between their seeds by {100 * spread:.2f} "
                "points (mean std); differences between arms smaller than that are not resolved by this study.",
                "",
            ]
    else:
        lines += ["No finished searched and random arms yet.", ""]
    lines += [
        "## Did the search decide?",
        "",
        "Normalised entropy (1 = uniform, the argmax is noise; 0 = one-hot) at the end of each search.",
        "Real searches against null searches (the same search with its signal destroyed), split-half",
        "reliability and perturbation selection: [docs/search_signal.md](search_signal.md).",
        "",
        _table(
            ["search job", "what", "entropy", "beta entropy", "epochs", "wall (min)", "CPU (min)"],
            search_rows(study, plan),
        ),
        "",
    ]
    lines += decide_section(study)
    lines += ["## Pictures", ""] + [f"![{k}]({rel(p)})" for k, p in pics.items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, required=True, help="the --out folder of experiments.camvid_study")
    ap.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--img", type=Path, default=None, help="picture folder (default: img/results beside --out)")
    args = ap.parse_args(argv)
    img = args.img or args.out.parent / "img" / "results"
    page = render(args.study, args.out, img)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    print(f"results: {args.out} ({len(page.splitlines())} lines), pictures in {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
