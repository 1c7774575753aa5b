"""CamVid at 480x360 (issue 25): the tables of phase A (scales) and phase B (ours vs ENet), from run folders.

    python -m experiments.camvid_full --phase-a runs/camvid_full/phase_a --phase-b runs/camvid_full/phase_b \
        --out docs/camvid_full.md
    # keep what the page is made of in the repo (the machine's run folders do not outlive a session):
    python -m experiments.camvid_full --archive runs/camvid_full/phase_b --records experiments/records/camvid_full/phase_b
    python -m experiments.camvid_full --keep-phase-a --phase-b experiments/records/camvid_full/phase_b \
        --phase-c experiments/records/camvid_full/phase_c --out docs/camvid_full.md

Protocol (written before the runs): experiments/README.md "CamVid at 480x360".

* Phase A: every `stage=eval split=select` run under the folder (a metrics.json whose split is `select`)
  scores a training run's checkpoint on the sequence-disjoint selection split at one `dataset.eval_scale`
  (its config.yaml); the training run (the checkpoint's folder) gives `dataset.scale_range`. The chosen
  pair is the protocol's: the highest selection mIoU, where pairs within 1 point of it tie and the cheaper
  inference (smaller eval_scale) wins. Val is not read.
* Phase B: every pipeline folder (pipeline.json) under the folder, grouped by its `net` (rspnet when the
  record predates the field): val mIoU (eval/metrics.json, once, the selected checkpoint), the selection
  score of the selected checkpoint (train.json `best_val_miou`: the maximum over epochs, so it flatters),
  per-class val IoU, params, wall and CPU time of the whole pipeline (the done markers: ours includes its
  searches). Ours vs ENet: difference of the seed means with a bootstrap 95 % interval (seeds resampled
  within each net), one-sided Welch and permutation p (experiments/stats.py), and the issue's goals.
  Where a goal is not met, what limits it, from the same records: the val - selection gap (unseen streets),
  the selection score's gain over the schedule's second half (train/curves.json), and the share of labelled
  training pixels and the width of the classes under the floor (train/class_stats.json).
* Phase C: ours again with a cost target (`search.target_gmacs`; the shipped recipe), the same endpoints,
  beside phase B's other nets (their training stage is unchanged, so they are not rerun) and beside phase B's
  ours (what the target costs). GMACs are counted from each record's genotype and macro (or `net` keys).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.common import device_info, emit, md_table
from experiments.results import _json, timing

TIE = 0.01  # phase A: selection mIoU differences under 1 point are ties
GOALS = {"miou": 0.60, "params": 500_000, "class_floor": 0.20}


def _config(folder: Path) -> Any:
    path = folder / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else OmegaConf.create({})


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def _clock(folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a run: its done marker, else the sum of its sub-stages' (0, 0 when none finished)."""
    return timing(folder) or timing(*sorted(d for d in folder.iterdir() if d.is_dir())) or (0.0, 0.0)


# ---------------------------------------------------------------- phase A


def phase_a_rows(root: Path) -> list[dict[str, Any]]:
    """One row per selection-split evaluation: scale range (of the trained run), eval scale, mIoU."""
    rows = []
    for path in sorted(root.rglob("metrics.json")):
        metrics = _json(path)
        if not metrics or metrics.get("split") != "select":
            continue
        run = Path(metrics.get("checkpoint", "")).parent.parent  # <run>/checkpoints/<name>.ckpt
        clocks = timing(run)
        scale_range = OmegaConf.select(_config(run), "dataset.scale_range", default=None)
        eval_scale = OmegaConf.select(_config(path.parent), "dataset.eval_scale", default=None)
        rows.append(
            {
                "run": run.name,
                "scale_range": list(scale_range) if scale_range is not None else None,
                "eval_scale": 1.0 if eval_scale is None else float(eval_scale),
                "miou": metrics["miou"],
                "checkpoint": Path(metrics.get("checkpoint", "")).name,
                "train_wall_s": clocks and clocks[0],
            }
        )
    return rows


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The protocol's pick: the best selection mIoU; within TIE of it, the smallest eval scale (then the best)."""
    if not rows:
        return None
    best = max(r["miou"] for r in rows)
    near = [r for r in rows if best - r["miou"] < TIE]
    return min(near, key=lambda r: (r["eval_scale"], -r["miou"]))


def phase_a_lines(root: Path) -> list[str]:
    rows = phase_a_rows(root)
    lines = ["## Phase A: training and inference scale (selection split, one seed)", ""]
    if not rows:
        return lines + [f"No `split=select` evaluation under `{root}` yet.", ""]
    pick = choose(rows)
    lines += [
        md_table(
            ["training run", "scale_range", "eval_scale", "selection mIoU (%)", "checkpoint", "training wall (min)"],
            [
                [
                    r["run"],
                    r["scale_range"],
                    f"{r['eval_scale']:g}",
                    _pct(r["miou"], 2),
                    r["checkpoint"],
                    "–" if r["train_wall_s"] is None else f"{r['train_wall_s'] / 60:.1f}",
                ]
                for r in rows
            ],
        ),
        "",
        f"Chosen (highest selection mIoU; within {100 * TIE:.0f} point the smaller eval_scale): "
        f"**scale_range {pick['scale_range']}, eval_scale {pick['eval_scale']}** ({_pct(pick['miou'], 2)} %).",
        "",
    ]
    return lines


# ---------------------------------------------------------------- phase B


def gmacs(folder: Path) -> float | None:
    """GMACs (batch 1) of a pipeline's trained net at its training crop, built on the meta device from the records:
    ours from its searched genotype and macro, another `net` group entry from its keys (None where they are missing)."""
    from rspnet.architecture import load_architecture
    from rspnet.models.cost import summarize, summarize_family
    from rspnet.stages.pipeline import searched_artifacts

    cfg = _config(folder / "train")
    if OmegaConf.select(cfg, "dataset.crop_size", default=None) is None:
        return None
    if OmegaConf.select(cfg, "net.name", default="rspnet") != "rspnet":
        return summarize_family(cfg, OmegaConf.to_container(cfg.net, resolve=True))["gmacs"]
    genotype, macro = searched_artifacts(folder)
    if not (genotype.is_file() and macro.is_file()):
        return None
    cfg.genotype, cfg.macro_arch = str(genotype), str(macro)
    return summarize(cfg, *load_architecture(cfg))["gmacs"]


def phase_b_runs(root: Path) -> list[dict[str, Any]]:
    """One record per finished pipeline folder."""
    runs = []
    for path in sorted(root.rglob("pipeline.json")):
        summary, folder = _json(path), path.parent
        metrics = _json(folder / "eval" / "metrics.json")
        if not summary or not metrics:
            continue
        wall, cpu = _clock(folder)
        config = _config(folder)  # read once: seed, threads, eval_scale
        runs.append(
            {
                "folder": folder.name,
                "net": summary.get("net") or "rspnet",
                "seed": OmegaConf.select(config, "seed", default=None),
                "val": metrics["miou"],
                "select": summary.get("selection_miou"),
                "per_class": metrics.get("iou_per_class") or {},
                "params": summary.get("params"),
                "wall_s": wall,
                "cpu_s": cpu,
                "gmacs": gmacs(folder),
                "target_gmacs": OmegaConf.select(config, "search.target_gmacs", default=None),
                "threads": OmegaConf.select(config, "threads.intra_op", default=None),
                "eval_scale": OmegaConf.select(config, "dataset.eval_scale", default=None),
                "curve": (_json(folder / "train" / "curves.json") or {}).get("rows") or [],
                "class_stats": (_json(folder / "train" / "class_stats.json") or {}).get("stats") or {},
            }
        )
    return runs


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.2f}{sd}"


def _class_mean(runs: list[dict], c: str) -> float | None:
    values = [r["per_class"][c] for r in runs if r["per_class"].get(c) is not None]
    return statistics.fmean(values) if values else None


def comparison(ours: list[float], theirs: list[float]) -> dict[str, Any] | None:
    """Ours - theirs on seed means: difference (points), bootstrap 95 % interval, Welch and permutation p."""
    from experiments.stats import compare, pooled_variance

    if len(ours) < 2 or len(theirs) < 2:
        return None
    c = compare([[100 * v] for v in ours], [[100 * v] for v in theirs])  # each seed its own unit
    pooled = pooled_variance([(len(v), 100 * statistics.stdev(v)) for v in (ours, theirs)])
    return {
        "difference": c.difference,
        "ci": (c.ci_low, c.ci_high),
        "welch_p": c.welch_p,
        "permutation_p": c.permutation_p,
        "pooled_sd": pooled[0] ** 0.5 if pooled else None,
    }


def _group(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by net, ours (rspnet) first."""
    nets = sorted({r["net"] for r in runs}, key=lambda n: (n != "rspnet", n))
    return {n: [r for r in runs if r["net"] == n] for n in nets}


def _range(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def comparison_lines(label: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    """One bullet per split (val, select): the difference of the seed means, its interval and tests."""
    lines = []
    for split in ("val", "select"):
        c = comparison(
            [r[split] for r in ours if r[split] is not None], [r[split] for r in theirs if r[split] is not None]
        )
        if c is None:
            continue
        lines.append(
            f"* {split}: {label} = {c['difference']:+.2f} points [95 % CI {c['ci'][0]:+.2f}, "
            f"{c['ci'][1]:+.2f}], Welch p = {c['welch_p']:.3g}, permutation p = {c['permutation_p']:.3g} "
            f"(one-sided); pooled seed SD {c['pooled_sd']:.2f} points."
        )
    return lines + [""] if lines else []


def results_lines(by: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The nets' table, per-class IoU, ours vs the other net, the issue's goals and what limits them."""
    nets = list(by)
    runs = [r for rs in by.values() for r in rs]
    lines = [
        md_table(
            [
                "net",
                "seeds",
                "val mIoU (%)",
                "selection mIoU (%)",
                "params (M, mean)",
                "GMACs at the crop (range)",
                "wall (min, mean)",
                "CPU (min, mean)",
            ],
            [
                [
                    n,
                    ", ".join(str(r["seed"]) for r in rs),
                    _mean_sd([r["val"] for r in rs]),
                    _mean_sd([r["select"] for r in rs if r["select"] is not None]),
                    f"{statistics.fmean(r['params'] for r in rs if r['params']) / 1e6:.3f}",
                    _range([r["gmacs"] for r in rs]),
                    f"{statistics.fmean(r['wall_s'] for r in rs) / 60:.1f}",
                    f"{statistics.fmean(r['cpu_s'] for r in rs) / 60:.1f}",
                ]
                for n, rs in by.items()
            ],
        ),
        "",
    ]
    classes = list(next((r["per_class"] for r in runs if r["per_class"]), {}))
    class_means = {n: {c: _class_mean(rs, c) for c in classes} for n, rs in by.items()}
    if classes:
        lines += [
            "Per-class val IoU (%), mean over seeds:",
            "",
            md_table(["class", *nets], [[c, *(_pct(class_means[n][c]) for n in nets)] for c in classes]),
            "",
        ]
    ours = by.get("rspnet", [])
    other = next((n for n in nets if n != "rspnet"), None)
    if ours and other:
        lines += comparison_lines(f"rspnet - {other}", ours, by[other])
    if ours:
        val = statistics.fmean(r["val"] for r in ours)
        sel = [r["select"] for r in ours if r["select"] is not None]
        floor = min((v for v in class_means["rspnet"].values() if v is not None), default=None)
        params = max(r["params"] or 0 for r in ours)
        checks = [
            ("val mIoU ≥ 0.60", val >= GOALS["miou"], f"{val:.3f}"),
            (
                "selection mIoU ≥ 0.60",
                bool(sel) and statistics.fmean(sel) >= GOALS["miou"],
                f"{statistics.fmean(sel):.3f}" if sel else "–",
            ),
            ("params ≤ 0.5M", params <= GOALS["params"], f"{params / 1e6:.3f}M (largest seed)"),
            (
                "no class below 0.20 (seed means)",
                floor is not None and floor >= GOALS["class_floor"],
                "–" if floor is None else f"lowest {floor:.3f}",
            ),
        ]
        lines += [
            "Issue goals (ours):",
            "",
            md_table(["goal", "met", "measured"], [[g, "yes" if m else "no", v] for g, m, v in checks]),
            "",
        ]
        if not all(m for _, m, _ in checks):
            lines += limits_lines(by, class_means["rspnet"])
    return lines


VAL_NOTE = (
    "Val: CamVid val (101 frames of 0016E5), scored once at the labels' 480x360 with the checkpoint the "
    "selection split picked. Selection: the selected checkpoint's score on the held-out sequence 0006R0 "
    "(the maximum over epochs, so optimistic). GMACs: the trained net at batch 1 and its training crop "
    "(`dataset.crop_size`), counted on the meta device from the records. Wall/CPU: the whole pipeline (ours "
    "includes both searches)."
)


def phase_b_lines(root: Path, runs: list[dict[str, Any]]) -> list[str]:
    """Phase B's section from its runs (`phase_b_runs(root)`)."""
    lines = ["## Phase B: the recipe end to end vs the same-recipe ENet (480x360)", ""]
    if not runs:
        return lines + [f"No finished pipeline under `{root}` yet.", ""]
    lines += [VAL_NOTE, ""]
    pinned = [f"{r['folder']} ({r['threads']})" for r in runs if r["threads"] is not None]
    if pinned:
        lines += [
            f"Torch threads set by `threads.intra_op` in {len(pinned)} of {len(runs)} pipelines: {', '.join(pinned)}; "
            "the rest by the thread policy (usable cores minus loader workers). The protocol's amendments run two "
            "(three in one chunk) one-thread pipelines side by side, so those walls include the others' load; the "
            "idle check runs alone (experiments/README.md, the phase B amendments).",
            "",
        ]
    return lines + results_lines(_group(runs))


def phase_c_lines(root: Path, phase_b: list[dict[str, Any]]) -> list[str]:
    """Ours under phase C (the shipped recipe: a cost target) beside phase B's ENet, and beside phase B's ours
    (`phase_b`: phase B's runs, none when phase B is not given)."""
    ours = [r for r in phase_b_runs(root) if r["net"] == "rspnet"]
    lines = ["## Phase C: the shipped recipe (a GMACs target) vs the same-recipe ENet (480x360)", ""]
    if not ours:
        return lines + [f"No finished pipeline of ours under `{root}` yet.", ""]
    earlier = _group(phase_b)
    targets = sorted({r["target_gmacs"] for r in ours if r["target_gmacs"] is not None})
    target = ", ".join(f"{t:g}" for t in targets) or "none"
    lines += [
        f"Ours: `experiment=camvid_full` with `search.target_gmacs` {target} (both searches hold the derived net's "
        "GMACs at the training crop within the target's band). "
        + (
            "The other nets are phase B's pipelines: their training stage is phase C's, so they were not rerun. "
            if len(earlier) > 1
            else ""
        )
        + VAL_NOTE,
        "",
        "Ours, per seed (walls: experiments/README.md phase C says which seed ran alone):",
        "",
        md_table(
            ["seed", "val mIoU (%)", "selection mIoU (%)", "params (M)", "GMACs", "wall (min)", "CPU (min)"],
            [
                [
                    r["seed"],
                    _pct(r["val"], 2),
                    _pct(r["select"], 2),
                    f"{(r['params'] or 0) / 1e6:.3f}",
                    "–" if r["gmacs"] is None else f"{r['gmacs']:.3f}",
                    f"{r['wall_s'] / 60:.1f}",
                    f"{r['cpu_s'] / 60:.1f}",
                ]
                for r in ours
            ],
        ),
        "",
    ]
    lines += results_lines({"rspnet": ours, **{n: rs for n, rs in earlier.items() if n != "rspnet"}})
    cost = comparison_lines("phase C - phase B (ours)", ours, earlier.get("rspnet", []))
    if cost:
        lines += [
            "What the target costs: phase C's ours against phase B's (the same recipe without the target, "
            f"GMACs {_range([r['gmacs'] for r in earlier['rspnet']])}):",
            "",
            *cost,
        ]
    return lines


def _second_half_gain(curve: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Selection mIoU: mean of the 10 epochs before the schedule's half, and of its last 10 epochs."""
    miou = [r["select/miou"] for r in curve if r.get("select/miou") is not None]
    half = len(miou) // 2
    if half < 10:
        return None
    return statistics.fmean(miou[half - 10 : half]), statistics.fmean(miou[-10:])


def limits_lines(by: dict[str, list[dict[str, Any]]], ours_classes: dict[str, float | None]) -> list[str]:
    """What limits the goals that are not met, with the records' numbers (no new runs)."""
    lines = ["What limits it (computed from the same records):", ""]
    gaps = []
    for net, rs in by.items():
        pairs = [(r["val"], r["select"]) for r in rs if r["select"] is not None]
        if pairs:
            gaps.append(f"{statistics.fmean(100 * (v - s) for v, s in pairs):.1f} points ({net})")
    if gaps:
        lines.append(
            f"* Unseen streets: val - selection = {', '.join(gaps)}, seed means. Val's 0016E5 gives 204 of the "
            "training frames; the selection split's 0006R0 is a street no training frame shows, as the "
            "literature's test split mostly is (Seq05VD), so the selection score is the closer predictor of a "
            "test score."
        )
    for net, rs in by.items():
        gains = [g for g in (_second_half_gain(r["curve"]) for r in rs) if g is not None]
        if gains:
            before, after = (statistics.fmean(100 * g[i] for g in gains) for i in (0, 1))
            epochs = statistics.fmean(len(r["curve"]) for r in rs if r["curve"])
            lines.append(
                f"* Schedule ({net}, {epochs:.0f} epochs): selection mIoU {before:.1f} over the 10 epochs before "
                f"the half, {after:.1f} over the last 10 ({after - before:+.1f} points in the second half, "
                "seed means)."
            )
    stats = next((r["class_stats"] for r in by.get("rspnet", []) if r["class_stats"]), {})
    scale = next((r["eval_scale"] for r in by.get("rspnet", []) if r["eval_scale"]), None)
    pixels, widths = stats.get("pixels_per_class") or [], stats.get("mean_run_width_px") or []
    names = list(ours_classes)
    thin = [
        (i, c) for i, c in enumerate(names) if ours_classes[c] is not None and ours_classes[c] < GOALS["class_floor"]
    ]
    if thin and len(pixels) == len(names) == len(widths) and sum(pixels):
        parts = []
        for i, c in thin:
            at_scale = f", {widths[i] * scale:.1f} px at eval_scale {scale}" if scale else ""
            parts.append(
                f"{c} (IoU {100 * ours_classes[c]:.1f} %): {100 * pixels[i] / sum(pixels):.1f} % of the labelled "
                f"training pixels, horizontal runs {widths[i]:.1f} px wide at 480x360{at_scale}"
            )
        lines.append(f"* Classes under {GOALS['class_floor']:.2f} (ours): " + "; ".join(parts) + ".")
    return lines + [""] if len(lines) > 2 else []


# ---------------------------------------------------------------- records kept in the repo

RECORD_SUFFIXES = {".json", ".yaml"}  # scores, summaries, curves, configs, done markers, genotypes
RECORD_SKIP_DIRS = {"checkpoints", "wandb", "lightning_logs"}
RECORD_SKIP_FILES = {"hydra.yaml"}  # Hydra's runtime block: the machine's paths; config.yaml holds the run's config
RECORD_MAX_BYTES = 1 << 20


def finished(folder: Path) -> bool:
    """A pipeline whose summary and val score are written (an attempt killed before its end has neither)."""
    return (folder / "pipeline.json").is_file() and (folder / "eval" / "metrics.json").is_file()


def archive(src: Path, dst: Path) -> tuple[list[str], list[str]]:
    """Copy each finished pipeline's records (JSON/YAML under 1 MiB, no checkpoints or logs) from `src` to `dst`.

    The records are what the page is made of; a session's run folders do not outlive its machine. Absolute
    paths of this machine (the run folder's, the working directory's) are written relative to the repo, so a
    record names no machine path. Returns the pipelines copied and those skipped as unfinished. An existing
    record is replaced (the same pipeline's newer copy)."""
    prefixes = sorted({str(src.resolve()): str(src), str(Path.cwd().resolve()) + "/": ""}.items(), reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p, _ in prefixes))
    table = dict(prefixes)
    copied, skipped = [], []
    for summary in sorted(src.rglob("pipeline.json")):
        folder = summary.parent
        if not finished(folder):
            skipped.append(str(folder.relative_to(src)))
            continue
        rel = folder.relative_to(src)
        for path in sorted(folder.rglob("*")):
            parts = path.relative_to(folder).parts
            if (
                not path.is_file()
                or path.suffix not in RECORD_SUFFIXES
                or path.name in RECORD_SKIP_FILES
                or RECORD_SKIP_DIRS.intersection(parts)
                or path.stat().st_size > RECORD_MAX_BYTES
            ):
                continue
            out = dst / rel / path.relative_to(folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(pattern.sub(lambda m: table[m.group(0)], path.read_text()))
        copied.append(str(rel))
    return copied, skipped


KEPT_NOTE = "*Kept as rendered"


def kept_date(page: Path) -> str:
    """The render date on the page's `Page:` line ('an earlier date' when it has none)."""
    found = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", page.read_text()) if page.is_file() else None
    return found.group(0) if found else "an earlier date"


def kept_section(page: Path, title: str) -> list[str]:
    """The `## {title}...` section of an earlier render of the page (its lines up to the next `## `), else []."""
    if not page.is_file():
        return []
    lines, kept = page.read_text().splitlines(), []
    for line in lines:
        if line.startswith("## "):
            if kept:
                break
            if line.startswith(f"## {title}"):
                kept.append(line)
        elif kept:
            kept.append(line)
    return kept


def render(
    phase_a: Path | None, phase_b: Path | None, out: Path, keep_phase_a: bool = False, phase_c: Path | None = None
) -> str:

    info = device_info()
    args = " ".join(
        f"--{k} {v}" for k, v in (("phase-a", phase_a), ("phase-b", phase_b), ("phase-c", phase_c)) if v is not None
    )
    kept = kept_section(out, "Phase A") if keep_phase_a and phase_a is None else []
    if kept:
        args = f"--keep-phase-a {args}"
    lines = [
        "# CamVid at 480x360: scales, seeds and the same-recipe ENet (issue 25)",
        "",
        f"Page: `python -m experiments.camvid_full {args} --out {out}` on {info['cpu']} ({info['cores']} cores), "
        f'{info["date"]}. Protocol: experiments/README.md "CamVid at 480x360". Nothing is chosen on val.',
        "",
    ]
    if phase_c is not None:
        lines += [
            "The shipped recipe (`experiment=camvid_full`) is phase C's: phase B's recipe with a GMACs target in "
            'both searches, which keeps the pipeline within the hour (docs/benchmarks.md "Phase C at 480x360").',
            "",
        ]
    if phase_a is not None:
        lines += phase_a_lines(phase_a)
    elif kept:
        lines += (
            kept
            if any(line.startswith(KEPT_NOTE) for line in kept)
            else [
                kept[0],
                "",
                f"{KEPT_NOTE} {kept_date(out)}: phase A's run folders were on a machine that has since been reset, "
                "and their records were not archived.*",
                *kept[1:],
            ]
        )
        lines += [""] if lines[-1] else []
    runs_b = phase_b_runs(phase_b) if phase_b is not None else []  # read once: phase C shows them too
    if phase_b is not None:
        lines += phase_b_lines(phase_b, runs_b)
    if phase_c is not None:
        lines += phase_c_lines(phase_c, runs_b)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.camvid_full", description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase-a", type=Path, help="phase A's folder (training runs and their split=select evals)")
    ap.add_argument("--phase-b", type=Path, help="phase B's sweep folder (pipelines of net=rspnet and net=enet)")
    ap.add_argument(
        "--phase-c",
        type=Path,
        help="phase C's folder (ours with a cost target), shown beside --phase-b's other nets and ours",
    )
    ap.add_argument("--out", type=Path, help="write the page here (default: print it)")
    ap.add_argument(
        "--keep-phase-a",
        action="store_true",
        help="without --phase-a: keep the Phase A section of the page at --out as it is",
    )
    ap.add_argument("--archive", type=Path, help="copy the finished pipelines' records under this run folder ...")
    ap.add_argument("--records", type=Path, help="... to this folder in the repo (e.g. experiments/records/...)")
    args = ap.parse_args(argv)
    if (args.archive is None) != (args.records is None):
        ap.error("--archive RUNS and --records DIR go together")
    if args.archive is None and args.phase_a is None and args.phase_b is None and args.phase_c is None:
        ap.error("give --phase-a DIR, --phase-b DIR and/or --phase-c DIR (or --archive RUNS --records DIR)")
    if args.keep_phase_a and (args.phase_a is not None or args.out is None):
        ap.error("--keep-phase-a keeps the page's own section: give --out PAGE and no --phase-a")
    folders = (("--phase-a", args.phase_a), ("--phase-b", args.phase_b), ("--phase-c", args.phase_c))
    for flag, path in (*folders, ("--archive", args.archive)):
        if path is not None and not path.is_dir():
            print(f"camvid_full: error: {flag} {path}: not a folder", file=sys.stderr)
            return 2
    if args.archive is not None:
        copied, skipped = archive(args.archive, args.records)
        print(f"camvid_full: archived {len(copied)} finished pipeline(s) to {args.records}: {', '.join(copied)}")
        if skipped:
            print(f"camvid_full: not finished, not archived: {', '.join(skipped)}")
    if any(path is not None for _, path in folders):
        page = render(
            args.phase_a, args.phase_b, args.out or Path("-"), keep_phase_a=args.keep_phase_a, phase_c=args.phase_c
        )
        emit(page, args.out, "camvid_full")
    return 0


if __name__ == "__main__":
    sys.exit(main())
