"""Real vs null macro search on synthetic scenes: the evidence of `macro.select=perturb` (issue 24).

    python -m experiments.macro_evidence_toy --seeds 0 1 2 3 --out outputs/macro_evidence_toy

Per seed, one macro search with the real labels and one with `search.null=true` (the arch half's
labels, and the perturbation's scoring labels, are an i.i.d. random class per pixel), on a small
synthetic task (tiny preset, 2 layers, 32x64 images); both rank the inputs by perturbation and record
the evidence in macro.json. The table gives, per arm, the mean over seeds of: the split-half
reliability (Spearman) of the path scores (alternate arch steps) and of the drops (alternate scoring
batches), the mean top-1 minus top-2 margin of each, and the perturbation's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from rspnet.composition import compose
from rspnet.genotype import Genotype, MacroArch
from rspnet.stages import run_stage

CELL = ["conv_3x3", "dw_conv_3x3", "skip_connect"]
TASK = [
    "stage=macro_search",
    "debug=tiny",
    "model.layers=2",
    "dataset.num_train=40",
    "dataset.val_batch_size=2",
    "search.arch_optim=adam",
    "search.arch_adam_lr=0.03",
    "macro.select=perturb",
    "macro.perturb_batches=null",
]


def run_arm(out: Path, seed: int, null: bool, epochs: int) -> dict[str, Any]:
    """One macro search (resumable: a finished one is read back); -> its evidence numbers."""
    run_dir = out / f"{'null' if null else 'real'}_s{seed}"
    if not (run_dir / "macro.json").is_file():
        genotype = Genotype.from_ops(CELL, rsp=True).save(out / "genotype.json")
        overrides = [*TASK, f"seed={seed}", f"trainer.max_epochs={epochs}", f"search.null={str(null).lower()}"]
        cfg = compose(*overrides, f"genotype={genotype}", f"paths.output_dir={run_dir}", "print_config=false")
        run_stage(cfg)
    evidence = MacroArch.load(run_dir / "macro.json").search["evidence"]
    perturb = evidence["perturb"]
    return {
        "arm": "null" if null else "real",
        "seed": seed,
        "path_split_half": (evidence["path_scores"]["split_half"] or {}).get("spearman"),
        "path_margin": evidence["path_scores"]["mean"]["margin"],
        "perturb_split_half": (perturb["split_half"] or {}).get("spearman"),
        "perturb_margin": perturb["mean"]["margin"],
        "perturb_seconds": perturb["seconds"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per arm the mean (min..max) over seeds of each number."""
    keys = ["path_split_half", "path_margin", "perturb_split_half", "perturb_margin", "perturb_seconds"]
    lines = ["| arm | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for arm in ("real", "null"):
        mine = [r for r in rows if r["arm"] == arm]
        cells = []
        for k in keys:
            values = [r[k] for r in mine if r[k] is not None]
            cells.append(f"{statistics.mean(values):.3f} ({min(values):.3f}..{max(values):.3f})" if values else "-")
        lines.append(f"| {arm} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("outputs/macro_evidence_toy"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run_arm(args.out, s, null, args.epochs) for s in args.seeds for null in (False, True)]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
