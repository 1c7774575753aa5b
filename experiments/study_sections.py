"""The round-2 sections of the study page (issue 26; protocol: experiments/README.md, round 2).

`experiments.results --study DIR` renders them from the same folders the phases write:

* `gate_lines(study, null)`: do the search seeds agree more than null searches do? Pairwise agreement of
  the cells' ops (fraction of edges equal) and of the trellises' kept inputs (Jaccard per node) over the
  study's searches against the null searches' (`search.null=grad`, run into a study dir of their own),
  with a permutation test that swaps whole searches between the groups (seed pairs share searches, so
  a test over pairs would not be valid), and the real-vs-null decisiveness tables of
  `experiments.search_signal`. Passed when real agreement exceeds the null's with p < 0.05 in either stage.
* `front_lines(studies, img)`: the cost-accuracy front over one or more study dirs (one per resource
  target): every arm's mean val mIoU against its params and its measured CPU latency (`study=profile`);
  per searched net the fraction of random nets (of every target) within +-10 % of its cost whose mean
  mIoU it equals or beats, and the hypervolume of the searched and of the random points (reference: the
  worst random net's cost and mIoU).
* `summary_lines(...)`: the page's first section: the primary endpoint with its interval and tests, the gate,
  the front's dominance counts and hypervolumes, and whether the issue's goal is met (and which part is not).
* `cost_lines(studies)`: per study dir and phase, the finished jobs' CPU and wall hours (their done.json).
* `per_class_lines(study, rows)`: per-class val IoU (mean over training seeds) of the best searched and
  the best random architecture. Reported, not selected: nothing is chosen by this table.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bench.common import md_table
from experiments import search_signal
from experiments.stats import dominance, hypervolume, swap_test

GATE_P = 0.05
DOMINANCE_GOAL = 0.75
COSTS = {"params": ("params (M)", 1e-6), "latency_ms": ("CPU latency (ms, 1 thread)", 1.0)}


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _searches(study: Path) -> dict[str, list[dict]]:
    """Finished cell and macro searches of a study dir (its cell/ and macro/ phases), by kind."""
    return search_signal.collect([d for d in (study / "cell", study / "macro") if d.is_dir()])


def gate_rows(real: dict[str, list[dict]], null: dict[str, list[dict]], draws: int = 10_000) -> list[dict[str, Any]]:
    """Per stage with >= 2 real and >= 2 null searches: agreement real / null, the swap test's p, passed."""
    rows = []
    for kind in ("cell", "macro"):
        r = [x["choice"] for x in real.get(kind, [])]
        n = [x["choice"] for x in null.get(kind, [])]
        if len(r) < 2 or len(n) < 2:
            continue
        gap, p = swap_test(r, n, search_signal.pairwise, draws=draws)
        rows.append(
            {
                "stage": kind,
                "real": len(r),
                "null": len(n),
                "agree_real": search_signal.pairwise(r),
                "agree_null": search_signal.pairwise(n),
                "gap": gap,
                "p": p,
                "passed": gap > 0 and p < GATE_P,
            }
        )
    return rows


def gate_result(study: Path, null: Path | None) -> tuple[dict, dict, list[dict[str, Any]]] | None:
    """(real searches, null searches, `gate_rows`) of a study and its null study dir; None without the null."""
    if null is None or not null.is_dir():
        return None
    real, nulls = _searches(study), _searches(null)
    return real, nulls, gate_rows(real, nulls)


def gate_lines(study: Path, null: Path | None, gate: tuple | None = None) -> list[str]:
    """The gate section: agreement real vs null with the swap test, then the decisiveness tables (`gate`:
    `gate_result(study, null)`, computed when not given)."""
    lines = ["## Gate: do the searches agree more than null searches?", ""]
    gate = gate or gate_result(study, null)
    if gate is None:
        real = _searches(study)
        return lines + [
            "No null searches found (run the protocol's `study.dir=<study>_null ... search.null=grad` phases, or "
            "pass `--null DIR`); the searches' own agreement:",
            "",
            *(
                f"* {k}: {len(v)} searches, pairwise agreement {_f(search_signal.pairwise([x['choice'] for x in v]))}"
                for k, v in real.items()
                if v
            ),
            "",
        ]
    real, nulls, rows = gate
    lines += [
        f"Real searches: `{study.name}`; null searches (`search.null=grad`: the architecture gradients replaced by "
        f"noise of the same size): `{null.name if null else '?'}`. Agreement: mean over search pairs of the fraction of cell edges "
        "with the same op (chance 0.20 with 5 ops), or of the Jaccard index of each trellis node's kept inputs. "
        "p: permutation test swapping whole searches between real and null (10,000 draws, one-sided). "
        f"Passed when real agreement exceeds the null's with p < {GATE_P} in either stage.",
        "",
    ]
    if not rows:
        return lines + ["(needs >= 2 finished real and >= 2 null searches of a stage)", ""]
    lines += [
        md_table(
            ["stage", "real / null searches", "agreement real", "agreement null", "real - null", "p", "passed"],
            [
                [
                    r["stage"],
                    f"{r['real']} / {r['null']}",
                    _f(r["agree_real"]),
                    _f(r["agree_null"]),
                    f"{r['gap']:+.3f}",
                    f"{r['p']:.3g}",
                    "yes" if r["passed"] else "no",
                ]
                for r in rows
            ],
        ),
        "",
        f"**Gate {'passed' if any(r['passed'] for r in rows) else 'failed'}** "
        f"({', '.join(r['stage'] for r in rows if r['passed']) or 'no stage'} above the null). "
        "The comparison below runs either way (protocol).",
        "",
    ]
    for kind in ("cell", "macro"):
        if real.get(kind) and nulls.get(kind):
            lines += [search_signal.table(kind, real[kind] + nulls[kind]).replace("### ", "#### "), ""]
    return lines


def target_of(study: Path) -> int | None:
    """The study's resource target (study.target_params of any of its phases' multirun.yaml)."""
    for phase in ("sample", "macro", "cell", "train"):
        path = study / phase / "multirun.yaml"
        if path.is_file():
            value = OmegaConf.select(OmegaConf.load(path), "study.target_params", default=None)
            if value is not None:
                return int(value)
    return None


def front_points(study: Path, rows: list[dict]) -> list[dict[str, Any]]:
    """The arms of one study with a mean mIoU: group, mean, params and latency (its profile.json)."""
    target = target_of(study)
    points = []
    for r in rows:
        if r["group"] not in ("searched", "random") or r["mean"] is None:
            continue
        profile_path = study / "profile" / r["name"] / "profile.json"
        profile = json.loads(profile_path.read_text()) if profile_path.is_file() else {}
        points.append(
            {
                "study": study.name,
                "target": target,
                "name": r["name"],
                "group": r["group"],
                "miou": 100 * r["mean"],
                "params": profile.get("params") or r["params"],
                "latency_ms": profile.get("latency_ms"),
            }
        )
    return points


def front_stats(points: list[dict], cost: str) -> dict[str, Any] | None:
    """Per searched point its dominance over the random points near its cost; both groups' hypervolumes."""
    have = [p for p in points if p.get(cost) is not None]
    rnd = [p for p in have if p["group"] == "random"]
    found = [p for p in have if p["group"] == "searched"]
    if not rnd or not found:
        return None
    rc, rm = [p[cost] for p in rnd], [p["miou"] for p in rnd]
    reference = (max(rc), min(rm))
    return {
        "dominance": {id(p): dominance(p[cost], p["miou"], rc, rm) for p in found},
        "hv_searched": hypervolume([(p[cost], p["miou"]) for p in found], reference),
        "hv_random": hypervolume(list(zip(rc, rm)), reference),
        "reference": reference,
    }


def all_points(studies: list[tuple[Path, list[dict]]]) -> list[dict[str, Any]]:
    """The front's points over (study dir, arm rows) pairs, one pair per resource target."""
    return [p for study, rows in studies for p in front_points(study, rows)]


def front_goals(points: list[dict]) -> dict[str, dict[str, Any]]:
    """Per cost axis with searched and random points: `front_stats` plus how many searched nets with random
    neighbours reach the dominance goal (`met` of `n`) and their median dominance."""
    goals = {}
    for cost in COSTS:
        stats_ = front_stats(points, cost)
        if stats_ is None:
            continue
        fracs = [f for f, _ in stats_["dominance"].values() if f is not None]
        median = statistics.median(fracs) if fracs else None
        goals[cost] = stats_ | {"met": sum(f >= DOMINANCE_GOAL for f in fracs), "n": len(fracs), "median": median}
    return goals


def _axis(cost: str) -> str:
    """A cost axis's name without its unit: "params", "CPU latency"."""
    return COSTS[cost][0].split(" (")[0]


def _goal_text(cost: str, g: dict[str, Any]) -> str:
    """How many searched nets reach the dominance goal on one cost axis, and both groups' hypervolumes."""
    scale = COSTS[cost][1]
    return (
        f"{g['met']} of {g['n']} searched nets with random neighbours reach the {DOMINANCE_GOAL:.0%} dominance goal "
        f"(median {_f(g['median'], 2)}); hypervolume searched {g['hv_searched'] * scale:.3g} vs random "
        f"{g['hv_random'] * scale:.3g}"
    )


def front_lines(
    studies: list[tuple[Path, list[dict]]], img: Path, points: list[dict] | None = None
) -> tuple[list[str], dict[str, Path]]:
    """The front section and its picture, over (study dir, arm rows) pairs (one per resource target; `points`:
    `all_points(studies)`, computed when not given)."""
    points = all_points(studies) if points is None else points
    lines = ["## Cost-accuracy front", ""]
    if not any(p["group"] == "searched" for p in points) or not any(p["group"] == "random" for p in points):
        return lines + ["(needs finished searched and random arms)", ""], {}
    goals = front_goals(points)
    by = {cost: goals.get(cost) for cost in COSTS}
    targets = sorted({p["target"] for p in points if p["target"]})
    lines += [
        f"Targets: {', '.join(f'{t / 1e6:.2f}M' for t in targets) or '?'} params ({len(studies)} study dir(s): "
        f"{', '.join(f'`{s.name}`' for s, _ in studies)}); {sum(p['group'] == 'searched' for p in points)} searched "
        f"and {sum(p['group'] == 'random' for p in points)} random architectures, each at its mean val mIoU over "
        "its training seeds. Dominance: the fraction of random nets (of every target) within ±10 % of a searched "
        f"net's cost whose mean mIoU it equals or beats (goal ≥ {DOMINANCE_GOAL:.0%}; n = how many are that "
        "close). Latency: `study=profile` (batch 1, the study's input, one thread, median of the passes); "
        "measured while other jobs may have shared the machine, so params are the firmer axis.",
        "",
    ]
    rows = []
    for p in (p for p in points if p["group"] == "searched"):
        cells = []
        for stats_ in by.values():
            frac, n = stats_["dominance"].get(id(p), (None, 0)) if stats_ else (None, 0)
            cells.append("–" if frac is None else f"{frac:.0%} (n = {n})")
        rows.append(
            [
                p["study"],
                p["name"],
                _f(p["params"] and p["params"] / 1e6),
                _f(p["latency_ms"], 1),
                f"{p['miou']:.2f}",
                *cells,
            ]
        )
    lines += [
        md_table(
            [
                "study",
                "searched arm",
                "params (M)",
                "latency (ms)",
                "val mIoU (%)",
                "dominance by params",
                "dominance by latency",
            ],
            rows,
        ),
        "",
    ]
    for cost, stats_ in goals.items():
        label, scale = COSTS[cost]
        lines.append(
            f"* by {_axis(cost)}: {_goal_text(cost, stats_)} ({label} x mIoU points; reference "
            f"{stats_['reference'][0] * scale:.3g}, {stats_['reference'][1]:.2f} %)."
        )
    lines.append("")
    return lines, {"front": front_figure(points, img / "front.png")}


def front_figure(points: list[dict], path: Path) -> Path:
    """mIoU against params and against latency, searched vs random, one marker per target."""
    from rspnet.viz import new_figure, save_figure

    fig = new_figure(10, 4)
    markers = dict(zip(sorted({str(p["target"]) for p in points}), "os^Dv<>"))
    for i, (cost, (label, scale)) in enumerate(COSTS.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        for group, colour in (("random", "tab:grey"), ("searched", "tab:red")):
            for target, marker in markers.items():
                sel = [p for p in points if p["group"] == group and str(p["target"]) == target and p.get(cost)]
                if sel:
                    name = f"{group} (target {int(target) / 1e6:.2f}M)" if target != "None" else group
                    ax.scatter(
                        [p[cost] * scale for p in sel],
                        [p["miou"] for p in sel],
                        c=colour,
                        marker=marker,
                        s=28,
                        alpha=0.75,
                        label=name,
                    )
        ax.set_xlabel(label)
        ax.set_ylabel("val mIoU (%)")
        if i == 0:
            ax.legend(fontsize=7)
    return save_figure(fig, path)


def per_class_lines(study: Path, rows: list[dict], eval_dir: Any) -> list[str]:
    """Per-class val IoU of the best searched and the best random architecture (means over their seeds)."""
    best = {}
    for group in ("searched", "random"):
        arms = [r for r in rows if r["group"] == group and r["mean"] is not None]
        if arms:
            best[group] = max(arms, key=lambda r: r["mean"])
    if not best:
        return []
    per_arm = {}
    for group, arm in best.items():
        seeds = []
        for rec in arm["records"]:
            path = eval_dir(study, rec["dir"]) / "metrics.json"
            if path.is_file():
                seeds.append(json.loads(path.read_text()).get("iou_per_class") or {})
        per_arm[group] = seeds
    classes = list(next((s[0] for s in per_arm.values() if s and s[0]), {}))
    if not classes:
        return []

    def mean_iou(seeds: list[dict], c: str) -> str:
        values = [s[c] for s in seeds if s.get(c) is not None]
        return f"{100 * float(np.mean(values)):.1f}" if values else "–"

    header = ["class"] + [f"best {g}: `{best[g]['name']}` ({len(per_arm[g])} seeds)" for g in best]
    return [
        "## Per-class IoU (best searched and best random architecture)",
        "",
        "Val IoU (%) per class, mean over the architecture's training seeds; 'best' by mean val mIoU — a "
        "description of the two groups' tops, nothing is selected by it.",
        "",
        md_table(header, [[c] + [mean_iou(per_arm[g], c) for g in best] for c in classes]),
        "",
    ]


def job_state(folder: Path) -> str:
    """done (done.json) | running (its run-folder lock is held) | interrupted (a checkpoint, no done.json:
    resumable) | started (neither)."""
    from rspnet.utils import run_record

    if (folder / run_record.DONE).is_file():
        return "done"
    if run_record.running(folder):
        return "running"
    return "interrupted" if (folder / "checkpoints" / "last.ckpt").is_file() else "started"


def status_lines(study: Path) -> list[str]:
    """Where a study stands: per phase, its job folders (those with a config.yaml) by state."""
    from experiments.results import PHASES

    rows = []
    for phase in PHASES:
        found = (study / phase).rglob("config.yaml") if (study / phase).is_dir() else []
        jobs = sorted(p.parent for p in found if not p.parent.name.startswith("."))  # not Hydra's .hydra/ copy
        states = [job_state(j) for j in jobs]
        running = [j.relative_to(study / phase).as_posix() for j, s in zip(jobs, states) if s == "running"]
        rows.append(
            [
                phase,
                len(jobs),
                *(states.count(s) for s in ("done", "running", "interrupted", "started")),
                ", ".join(running) or "–",
            ]
        )
    return [
        f"Study `{study}`: job folders per phase (a job's folder appears when it starts; rerun a phase to "
        "resume its interrupted jobs and to run the ones not started).",
        "",
        md_table(["phase", "jobs", "done", "running", "interrupted", "started", "running now"], rows),
        "",
    ]


def cost_lines(studies: list[Path]) -> list[str]:
    """What the study cost: per study dir and phase, its finished jobs' CPU and wall hours (their done.json)."""
    from experiments.results import PHASES
    from rspnet.utils import run_record

    rows, cpu, wall, count = [], 0.0, 0.0, 0
    for study in studies:
        for phase in PHASES:
            done = [json.loads(f.read_text()) for f in sorted((study / phase).rglob(run_record.DONE))]
            if not done:
                continue
            c, w = (sum(float(d.get(k) or 0.0) for d in done) / 3600 for k in ("cpu_s", "wall_s"))
            rows.append([study.name, phase, len(done), f"{c:.2f}", f"{w:.2f}"])
            cpu, wall, count = cpu + c, wall + w, count + len(done)
    if not rows:
        return []
    return [
        "## Cost",
        "",
        "Every finished job's CPU time (user + system of its process tree) and wall time, from its done.json. "
        "Jobs ran two at a time on 2 cores beside other work, so a job's wall includes waiting for the CPU.",
        "",
        md_table(["study dir", "phase", "jobs", "CPU (h)", "wall of the jobs (h)"], rows),
        "",
        f"In all: {count} jobs, {cpu:.1f} CPU hours, {wall:.1f} hours of job wall time (two at a time: about "
        f"{wall / 2:.1f} h of machine time).",
        "",
    ]


def summary_lines(compared: Any, gate: tuple | None, points: list[dict], protocol: str) -> list[str]:
    """The page's first section: the primary endpoint, the gate, the front and the issue's goal in a few lines
    (`compared`: experiments.stats `Comparison` or None; `gate`: `gate_result`; `protocol`: a link to it)."""
    lines = [
        "## Summary",
        "",
        f"Analysis fixed before the runs: [protocol]({protocol}). Goal (issue 26): searched - random >= +1.0 "
        f"mIoU points with the 95 % interval above 0, and every searched net beating or tying >= "
        f"{DOMINANCE_GOAL:.0%} of the random nets within ±10 % of its cost.",
        "",
    ]
    if compared is None:
        lines.append("* **Comparison**: fewer than 2 finished architectures in a group; nothing to test yet.")
    else:
        c = compared
        lines.append(
            f"* **Comparison** (primary endpoint, architecture-level means): searched {c.searched_mean:.2f} vs "
            f"random {c.random_mean:.2f} % ({c.searched_archs} vs {c.random_archs} architectures), difference "
            f"**{c.difference:+.2f} points [95 % CI {c.ci_low:+.2f}, {c.ci_high:+.2f}]**, one-sided Welch p = "
            f"{c.welch_p:.3g}, permutation p = {c.permutation_p:.3g}: **{c.verdict}**."
        )
    if gate is None:
        lines.append("* **Gate**: no null searches (see below).")
    else:
        rows = gate[2]
        parts = [
            f"{r['stage']} agreement {_f(r['agree_real'])} vs null {_f(r['agree_null'])} (p = {r['p']:.2g})"
            for r in rows
        ]
        verdict_ = "passed" if any(r["passed"] for r in rows) else "failed"
        lines.append(f"* **Gate {verdict_}**: {'; '.join(parts) or 'too few searches'}.")
    goals = front_goals(points)
    for cost, g in goals.items():
        lines.append(f"* **Front, by {_axis(cost)}**: {_goal_text(cost, g)}.")
    if not goals:
        lines.append("* **Front**: needs finished searched and random arms.")
    by_params = goals.get("params")
    if compared is not None and by_params is not None:
        parts = {
            "difference >= +1.0 with the interval above 0": compared.difference >= 1.0 and compared.ci_low > 0,
            f"every searched net >= {DOMINANCE_GOAL:.0%} dominance by params": by_params["n"] > 0
            and by_params["met"] == by_params["n"],
        }
        missed = [k for k, ok in parts.items() if not ok]
        lines.append("* **Goal " + ("met**." if not missed else "not met**; missed: " + "; ".join(missed) + "."))
    return lines + [""]
