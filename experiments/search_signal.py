"""Does a search carry signal? Real searches against null searches (issue 24), from their artifacts.

    python -m experiments.search_signal runs/signal/cell [--out docs/img/results/signal_cell.md]
    python -m experiments.search_signal --knob base=runs/signal/cell,runs/signal/cell_grad \
        --knob beta1_09=runs/signal/knobs/beta1_09 ...     # the knob table (issue 24 item 3)

Reads every `genotype.json` / `macro.json` under the given sweep folders (Hydra multirun
`hydra.sweep.dir`s of `stage=cell_search` / `stage=macro_search`, real and `search.null=true` jobs
side by side; a genotype.json beside a macro.json is the cell a macro search read, not a cell
search's, and is skipped), and writes one table per artifact kind: for each statistic (decisiveness of the
readout the selection used, split-half reliability where the artifact records it) the real
searches' mean and SD, the null searches' mean and 2.5-97.5 % range, how many real searches lie
outside that range on the decisive side, and a one-sided Mann-Whitney test real vs null. Plus
how often two searches of a kind pick the same op per edge (input per node, as Jaccard) against
the same number for two null searches. Nothing here looks at val: the statistics are computed by
the searches on train.

A search "carries signal" where its statistics lie outside the null's 95 % range (SPEC 2.7).

`--knob NAME=DIR[,DIR...]` (repeated) writes the knob table instead: one row per search recipe
(each a sweep of real and `search.null=grad` cell searches), with the real-vs-null gap of the
readout's decisiveness (how far the real searches' mean normalised alpha entropy lies below the
null's, in null SDs, and its Mann-Whitney p), the split-half reliability of the alpha scores (and
of the perturbation drops where recorded) in real and null searches, the pairwise agreement of
the real searches' choices, and the CPU minutes per search (done.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from scipy.stats import mannwhitneyu

# statistic -> the direction in which a search is more decisive than noise (+1: larger, -1: smaller)
DIRECTION = {"entropy": -1, "top1": +1, "margin": +1, "spearman": +1, "top1_agreement": +1}


def _decisiveness(rows: list[list[float]]) -> dict[str, float]:
    from rspnet.search_space.evidence import decisiveness

    return {k: v for k, v in decisiveness(rows)["mean"].items() if v is not None}


def _evidence_stats(search: dict[str, Any]) -> dict[str, float]:
    """Flatten the artifact's `evidence` block: {"<scores>/<stat>": value} for decisiveness means and split-half."""
    out: dict[str, float] = {}
    for name, block in (search.get("evidence") or {}).items():
        if not isinstance(block, dict):
            continue
        for key, value in block.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{name}/{key}"] = float(value)
            elif isinstance(value, dict):
                for k2, v2 in (value.get("mean") or value).items():
                    if isinstance(v2, (int, float)) and not isinstance(v2, bool):
                        out[f"{name}/{key}/{k2}"] = float(v2)
    return out


def _null_kind(search: dict[str, Any]) -> str | None:
    """None for a real search, else the null's kind ("labels": `search.null=true|labels`, "grad")."""
    from rspnet.search_space.evidence import null_mode

    return null_mode(search)


def _cpu_s(path: Path) -> float | None:
    """CPU seconds of the run that wrote `path` (its done.json), if recorded."""
    done = path.parent / "done.json"
    return json.loads(done.read_text()).get("cpu_s") if done.is_file() else None


def read_cell(path: Path) -> dict[str, Any]:
    """One cell search: null flag, the ops, the alpha statistics, the recorded evidence."""
    doc = json.loads(path.read_text())
    search = doc.get("search") or {}
    stats = {f"alpha/{k}": v for k, v in _decisiveness([e["weights"] for e in doc["edges"]]).items()}
    return {
        "path": str(path),
        "cpu_s": _cpu_s(path),
        "null": _null_kind(search),
        "seed": search.get("seed"),
        "choice": [e["op"] for e in doc["edges"]],
        "stats": stats | _evidence_stats(search),
    }


def read_macro(path: Path) -> dict[str, Any]:
    """One macro search: null flag, the kept inputs per node, the path-score statistics, the recorded evidence."""
    doc = json.loads(path.read_text())
    search = doc.get("search") or {}
    rows = [[i["score"] for i in n["inputs"]] for n in doc["nodes"]]
    stats = {f"kept_scores/{k}": v for k, v in _decisiveness(rows).items()}
    choice = [frozenset((i["layer"], i["scale"]) for i in n["inputs"]) for n in doc["nodes"]]
    return {
        "path": str(path),
        "null": _null_kind(search),
        "seed": search.get("seed"),
        "choice": choice,
        "stats": stats | _evidence_stats(search),
    }


def agreement(a: list[Any], b: list[Any]) -> float:
    """Per position: equal ops (cell) or Jaccard of the kept input sets (macro), averaged."""
    vals = [len(x & y) / len(x | y) if isinstance(x, frozenset) else float(x == y) for x, y in zip(a, b)]
    return sum(vals) / len(vals)


def pairwise(choices: list[list[Any]]) -> float | None:
    """Mean `agreement` over every pair of searches' choices (None for fewer than two searches)."""
    pairs = [agreement(a, b) for a, b in itertools.combinations(choices, 2)]
    return statistics.fmean(pairs) if pairs else None


def _choices(runs: list[dict]) -> list[list[Any]]:
    return [r["choice"] for r in runs]


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def compare(real: list[dict], null: list[dict]) -> list[dict[str, Any]]:
    """One row per statistic both groups have."""
    rows, seen = [], set()
    keys = sorted({k for r in real for k in r["stats"]} & {k for r in null for k in r["stats"]})
    for key in keys:
        direction = DIRECTION.get(key.rsplit("/", 1)[-1], +1)
        rv = [r["stats"][key] for r in real if key in r["stats"]]
        nv = [r["stats"][key] for r in null if key in r["stats"]]
        values = (tuple(rv), tuple(nv))
        if len(set(rv + nv)) == 1 or values in seen:  # a constant (a count, a size) or a twin of a row above
            continue
        seen.add(values)
        lo, hi = _quantile(nv, 0.025), _quantile(nv, 0.975)
        outside = sum(v > hi for v in rv) if direction > 0 else sum(v < lo for v in rv)
        alt = "greater" if direction > 0 else "less"
        p = mannwhitneyu(rv, nv, alternative=alt).pvalue if len(rv) > 1 and len(nv) > 1 else None
        rows.append(
            {
                "statistic": key,
                "decisive": "larger" if direction > 0 else "smaller",
                "real_mean": statistics.fmean(rv),
                "real_sd": statistics.stdev(rv) if len(rv) > 1 else 0.0,
                "null_mean": statistics.fmean(nv),
                "null_lo": lo,
                "null_hi": hi,
                "outside": f"{outside}/{len(rv)}",
                "p": p,
            }
        )
    return rows


def table(kind: str, runs: list[dict]) -> str:
    """The markdown section for one artifact kind: real searches against each kind of null search."""
    real = [r for r in runs if not r["null"]]
    nulls = sorted({r["null"] for r in runs if r["null"]})
    lines = []
    for null_kind in nulls or [None]:
        null = [r for r in runs if r["null"] == null_kind]
        lines += [f"### {kind}: {len(real)} real vs {len(null)} null searches (search.null={null_kind})", ""]
        if not real or not null:
            lines += ["(needs both real and null searches)", ""]
            continue
        lines += [
            "| statistic | decisive when | real mean ± SD | null mean | null 95 % range | real outside | Mann-Whitney p |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in compare(real, null):
            p = "–" if r["p"] is None else f"{r['p']:.3g}"
            lines.append(
                f"| {r['statistic']} | {r['decisive']} | {r['real_mean']:.3f} ± {r['real_sd']:.3f} "
                f"| {r['null_mean']:.3f} | {r['null_lo']:.3f} – {r['null_hi']:.3f} | {r['outside']} | {p} |"
            )
        chance = "0.20 per edge" if kind == "cell" else "see null"
        agree = f"real {_fmt(pairwise(_choices(real)))}, null {_fmt(pairwise(_choices(null)))} (chance {chance})"
        lines += ["", f"Pairwise agreement of the choices: {agree}.", ""]
        if kind == "cell":
            lines += [
                f"Ops chosen over all edges: real {_op_counts(real)}; null {_op_counts(null)} "
                f"(chi-square test of equal op frequencies, real vs null: p = {_op_test(real, null):.3g}).",
                "",
            ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _op_counts(runs: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        for op in r["choice"]:
            counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _op_test(real: list[dict], null: list[dict]) -> float:
    """p of a chi-square test that real and null searches choose ops with the same frequencies."""
    from scipy.stats import chi2_contingency

    ops = sorted({op for r in real + null for op in r["choice"]})
    table = [[sum(r["choice"].count(op) for r in group) for op in ops] for group in (real, null)]
    return float(chi2_contingency(table).pvalue) if len(ops) > 1 else 1.0


def collect(folders: list[Path]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {"cell": [], "macro": []}
    for folder in folders:
        if not folder.is_dir():
            sys.exit(f"search_signal: error: {folder} is not a folder")
        for path in sorted(folder.rglob("genotype.json")):
            if (path.parent / "macro.json").is_file():  # the cell a macro search read (its copy) or a random draw
                continue
            if json.loads(path.read_text()).get("complete", True):
                runs["cell"].append(read_cell(path))
        for path in sorted(folder.rglob("macro.json")):
            if json.loads(path.read_text()).get("complete", True):
                runs["macro"].append(read_macro(path))
    return runs


KNOB_RELIABILITY = ("alpha/split_half/spearman", "perturb/split_half/spearman")


def _mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f}" if values else "–"


def knob_row(name: str, runs: list[dict]) -> str:
    """One row of the knob table: the real-vs-grad-null gap and the reliability of one search recipe."""
    real = [r for r in runs if not r["null"]]
    null = [r for r in runs if r["null"] == "grad"]
    if len(real) < 2 or len(null) < 2:
        cells = [name, str(len(real)), str(len(null)), "(needs >= 2 real and >= 2 grad-null searches)", *[""] * 6]
        return "| " + " | ".join(cells) + " |"
    rv, nv = ([r["stats"]["alpha/entropy"] for r in g] for g in (real, null))
    gap = (statistics.fmean(nv) - statistics.fmean(rv)) / (statistics.stdev(nv) or float("nan"))
    p = mannwhitneyu(rv, nv, alternative="less").pvalue
    reliability = [
        f"{_mean([r['stats'][k] for r in real if k in r['stats']])} / "
        f"{_mean([r['stats'][k] for r in null if k in r['stats']])}"
        for k in KNOB_RELIABILITY
    ]
    cpu = [r["cpu_s"] / 60 for r in runs if r.get("cpu_s")]
    return (
        f"| {name} | {len(real)} | {len(null)} | {statistics.fmean(rv):.3f} / {statistics.fmean(nv):.3f} "
        f"| {gap:+.2f} | {p:.3g} | {' | '.join(reliability)} | {_fmt(pairwise(_choices(real)))} | {_mean(cpu)} |"
    )


def knob_table(knobs: list[str]) -> str:
    """The markdown knob table for `--knob NAME=DIR[,DIR...]` arguments."""
    lines = [
        "| recipe | real | grad null | alpha entropy real / null | gap (null SDs) | Mann-Whitney p "
        "| alpha split-half real / null | perturb split-half real / null | real agreement | CPU min / search |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for knob in knobs:
        name, _, dirs = knob.partition("=")
        if not dirs:
            sys.exit(f"search_signal: error: --knob {knob}: use NAME=DIR[,DIR...]")
        lines.append(knob_row(name, collect([Path(d) for d in dirs.split(",")])["cell"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="sweep folders of real and null searches")
    ap.add_argument("--knob", action="append", default=[], help="NAME=DIR[,DIR...]: a knob-table row (repeat)")
    ap.add_argument("--out", type=Path, help="write the markdown here (default: print)")
    args = ap.parse_args(argv)
    if not args.folders and not args.knob:
        ap.error("give sweep folders, or --knob NAME=DIR[,DIR...]")
    runs = collect(args.folders)
    text = (
        knob_table(args.knob) if args.knob else "\n".join(table(kind, found) for kind, found in runs.items() if found)
    )
    if not text:
        sys.exit(
            "search_signal: error: no complete genotype.json / macro.json under " + " ".join(map(str, args.folders))
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
