"""Run CamVid recipe variants (loss x schedule x preset) and write their table as markdown.

    python -m experiments.camvid_recipes --root ../shared/data/camvid --out outputs/camvid_recipes \\
        [--loss ce mfb ...] [--schedule base ...] [--preset tiny cpu_small ...] \\
        [--genotype G --macro-arch M] [--table docs/camvid_recipes.md] [--list | --table-only] [--debug]

Every variant is `rspnet experiment=camvid` plus its overrides, run as a subprocess in its own
folder OUT/<loss>-<schedule>-<preset> (the pipeline layout: cell_search/ macro_search/ train/
eval/). With --genotype/--macro-arch the searches are skipped: stage=train then stage=eval of
the selected checkpoint, in the same layout. A finished variant writes OUT/<name>/done.json;
re-running skips it (resumable); an unfinished folder is cleared and the variant run again.
Checkpoints are selected on the held-out slice of train (`train.select=holdout`, the default);
val is evaluated once per variant by stage=eval and is the reported number. Wall time and
CPU time (user + system of the subprocesses) are measured here. `--debug` runs the grid on the
synthetic dataset at a micro size (seconds per variant) to check the machinery.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rspnet.utils.threads import usable_cores

LOSSES: dict[str, list[str]] = {
    "ce": [],
    "mfb": ["train.class_weights=auto", "train.class_weighting=median_freq"],
    "enet": ["train.class_weights=auto", "train.class_weighting=enet"],
    "ohem": ["train.ohem=true"],
    "ohem_mfb": ["train.ohem=true", "train.class_weights=auto", "train.class_weighting=median_freq"],
}
# epoch budgets (cell search / macro search / train) and learning rates; `base` = experiment=camvid as shipped
SCHEDULES: dict[str, list[str]] = {
    "base": [],
    "train_heavy": ["stage.cell_search_epochs=8", "stage.macro_search_epochs=6", "stage.train_epochs=90"],
    "adam_search": ["search.arch_optim=adam", "search.arch_adam_lr=0.003"],
    "lr05": ["train.lr=0.05"],
    "lr05_long": ["train.lr=0.05", "stage.train_epochs=90"],  # the hour's spare ~25 min spent on training
}
PRESETS: dict[str, list[str]] = {"tiny": ["model=tiny"], "cpu_small": ["model=cpu_small"]}
DEFAULT_LOSSES, DEFAULT_SCHEDULES, DEFAULT_PRESETS = ["ce", "mfb", "enet", "ohem_mfb"], ["base"], ["tiny", "cpu_small"]
# --debug: the same grid machinery on synthetic data, a few batches per stage
DEBUG = [
    "debug=tiny",  # synthetic data, 8 train / 4 val images at 32x64, no logger
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
    "model.search_layers=2",
    "model.layers=2",
    "model.cells_per_node=1",
    "stage.cell_search_epochs=1",
    "stage.macro_search_epochs=1",
    "stage.train_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "train.holdout_fraction=0.25",
]
DEBUG_LOSSES = ["ce", "mfb"]


@dataclass
class Variant:
    """One recipe: a loss, a schedule and a preset (their overrides, in that order)."""

    loss: str
    schedule: str
    preset: str
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.loss}-{self.schedule}-{self.preset}"


def grid(losses: Sequence[str], schedules: Sequence[str], presets: Sequence[str]) -> list[Variant]:
    """The product of the chosen losses, schedules and presets."""
    for kind, names, table in (
        ("loss", losses, LOSSES),
        ("schedule", schedules, SCHEDULES),
        ("preset", presets, PRESETS),
    ):
        unknown = [n for n in names if n not in table]
        if unknown:
            raise SystemExit(
                f"camvid_recipes: error: unknown {kind} {', '.join(unknown)}; choose from {', '.join(table)}"
            )
    return [
        Variant(lo, s, p, [*LOSSES[lo], *SCHEDULES[s], *PRESETS[p]])
        for lo, s, p in itertools.product(losses, schedules, presets)
    ]


def commands(v: Variant, folder: Path, base: list[str], genotype: str | None, macro: str | None) -> list[list[str]]:
    """The rspnet argument lists of a variant (the eval one's ckpt= is filled in after training)."""
    common = ["experiment=camvid", *base, *v.overrides, "print_config=false"]
    if genotype is None:
        return [[*common, f"paths.output_dir={folder}"]]
    arch = [f"genotype={genotype}"] + ([f"macro_arch={macro}"] if macro else [])
    return [
        [
            *common,
            "stage=train",
            *arch,
            "trainer.max_epochs=${stage.train_epochs}",
            f"paths.output_dir={folder / 'train'}",
        ],
        [*common, "stage=eval", f"paths.output_dir={folder / 'eval'}"],
    ]


def run_rspnet(args: list[str], log: Path) -> int:
    """Run `rspnet ARGS` (this interpreter's rspnet.cli), appending its output to `log`."""
    with log.open("a") as f:
        f.write(f"$ rspnet {shlex.join(args)}\n")
        f.flush()
        return subprocess.run(
            [sys.executable, "-m", "rspnet.cli", *args], stdout=f, stderr=subprocess.STDOUT
        ).returncode


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_variant(
    v: Variant,
    out: Path,
    base: list[str],
    genotype: str | None,
    macro: str | None,
    runner: Callable[[list[str], Path], int] = run_rspnet,
) -> dict[str, Any]:
    """Run one variant in OUT/<name> (cleared first) and write its done.json row; returns the row."""
    folder = out / v.name
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished earlier attempt: start the variant again
    folder.mkdir(parents=True)
    cmds = commands(v, folder, base, genotype, macro)
    wall0, cpu0 = time.perf_counter(), _children_cpu()
    shown = []
    for i, args in enumerate(cmds):
        if i == 1:  # stage=eval of the checkpoint stage=train selected
            args = [*args, f"ckpt={_read(folder / 'train' / 'train.json').get('selected_ckpt')}"]
        shown.append("rspnet " + shlex.join(args))
        code = runner(args, folder / "run.log")
        if code != 0:
            raise RuntimeError(f"variant {v.name}: `{shown[-1]}` exited with {code}; see {folder / 'run.log'}")
    metrics, train = _read(folder / "eval" / "metrics.json"), _read(folder / "train" / "train.json")
    row = {
        "name": v.name,
        "loss": v.loss,
        "schedule": v.schedule,
        "preset": v.preset,
        "miou": metrics.get("miou"),
        "iou_per_class": metrics.get("iou_per_class", {}),
        "reported_split": metrics.get("split"),
        "selected_on": (train.get("selection") or {}).get("selected_on"),
        "selection_miou": train.get("best_val_miou"),
        "params": train.get("params"),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "cpu_s": round(_children_cpu() - cpu0, 1),
        "commands": shown,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": usable_cores(),
    }
    (folder / "done.json").write_text(json.dumps(row, indent=2))
    return row


def _portable(command: str) -> str:
    """An eval command's absolute `ckpt=` as the path inside its variant folder (the table names no machine path)."""
    out = re.search(r"paths\.output_dir=(\S+)/eval\b", command)
    ckpt = re.search(r"ckpt=(/\S+)", command)
    if not (out and ckpt):
        return command
    return command.replace(ckpt.group(0), f"ckpt={out.group(1)}/train/checkpoints/{Path(ckpt.group(1)).name}")


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{100 * v:.1f}"


def chosen(rows: list[dict[str, Any]]) -> str | None:
    """The variant with the best held-out mIoU (the selection split; val is never looked at), or None."""
    scored = [r for r in rows if isinstance(r.get("selection_miou"), (int, float))]
    return max(scored, key=lambda r: r["selection_miou"])["name"] if scored else None


def render(rows: list[dict[str, Any]], note: str = "") -> str:
    """The markdown table: one row per variant (the chosen one marked), per-class IoU columns, then the commands."""
    classes = list(dict.fromkeys(c for r in rows for c in r.get("iou_per_class", {})))
    head = ["variant", "val mIoU (%)", "held-out mIoU (%)", *classes, "params (M)", "wall (min)", "CPU (min)"]
    best = chosen(rows)
    lines = [note, ""] if note else []
    if best:
        lines += [f"Chosen on the held-out column: **{best}** (marked *); val was not used to choose.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        params = f"{r['params'] / 1e6:.3f}" if isinstance(r.get("params"), (int, float)) else "–"
        cells = [
            r["name"] + (" *" if r["name"] == best else ""),
            _pct(r.get("miou")),
            _pct(r.get("selection_miou")),
            *(_pct(r.get("iou_per_class", {}).get(c)) for c in classes),
            params,
            f"{r['wall_s'] / 60:.1f}",
            f"{r['cpu_s'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands:", ""]
    lines += [f"* {r['name']}{_when(r)}: " + "; ".join(f"`{_portable(c)}`" for c in r["commands"]) for r in rows]
    return "\n".join(lines) + "\n"


def _when(r: dict[str, Any]) -> str:
    """' (finished DATE, N usable cores)' where the row recorded them (rows before this field: '')."""
    facts = [r["finished"]] if r.get("finished") else []
    facts += [f"{r['cores']} usable core{'s' if r['cores'] != 1 else ''}"] if r.get("cores") else []
    return f" ({', '.join(facts)})" if facts else ""


def main(argv: list[str] | None = None, runner: Callable[[list[str], Path], int] = run_rspnet) -> int:
    """Run (or skip, when done) every variant of the grid, then write the table."""
    ap = argparse.ArgumentParser(prog="python -m experiments.camvid_recipes", description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="CamVid root (SegNet layout); not needed with --debug")
    ap.add_argument("--out", type=Path, default=Path("outputs/camvid_recipes"))
    ap.add_argument("--loss", nargs="+", choices=list(LOSSES), default=None)
    ap.add_argument("--schedule", nargs="+", choices=list(SCHEDULES), default=None)
    ap.add_argument("--preset", nargs="+", choices=list(PRESETS), default=None)
    ap.add_argument("--genotype", help="skip the searches: train this genotype.json (with --macro-arch)")
    ap.add_argument("--macro-arch", help="macro.json for --genotype (default: default_macro)")
    ap.add_argument("--table", type=Path, default=None, help="markdown file to write (default OUT/recipes.md)")
    ap.add_argument("--list", action="store_true", help="print the variants and their commands, run nothing")
    ap.add_argument("--table-only", action="store_true", help="write the table of the finished variants, run nothing")
    ap.add_argument("--debug", action="store_true", help="synthetic data, micro sizes: checks the machinery")
    ap.add_argument("--note", default="", help="a sentence added to the table's note (e.g. how the runs shared cores)")
    ap.add_argument("overrides", nargs="*", help="extra hydra overrides for every variant")
    a = ap.parse_args(argv)
    if not a.debug and not a.root and not (a.list or a.table_only):
        ap.error("--root is required (or --debug)")
    variants = grid(
        a.loss or (DEBUG_LOSSES if a.debug else DEFAULT_LOSSES),
        a.schedule or DEFAULT_SCHEDULES,
        a.preset or (["tiny"] if a.debug else DEFAULT_PRESETS),
    )
    base = [*(DEBUG if a.debug else [f"dataset.root={a.root}"]), *a.overrides]
    if a.list:
        for v in variants:
            cmds = commands(v, a.out / v.name, base, a.genotype, a.macro_arch)
            print(v.name, "::", " ;; ".join("rspnet " + shlex.join(c) for c in cmds))
        return 0
    rows = []
    for v in variants:
        done = a.out / v.name / "done.json"
        if done.is_file():
            print(f"{v.name}: done, skipped")
            rows.append(_read(done))
            continue
        if a.table_only:
            print(f"{v.name}: not run, left out of the table")
            continue
        print(f"{v.name}: running ...", flush=True)
        rows.append(run_variant(v, a.out, base, a.genotype, a.macro_arch, runner))
        print(f"{v.name}: val mIoU {_pct(rows[-1]['miou'])} %, {rows[-1]['wall_s'] / 60:.1f} min")
    from bench.common import command_line, device_line

    note = "\n".join(
        [
            device_line(),
            f"Command: `{command_line('experiments.camvid_recipes', argv)}`",
            "",
            "Checkpoints selected on the held-out slice of train; val mIoU = stage=eval on val, once per variant. "
            f"Base overrides: `{' '.join(base)}`.{' ' + a.note if a.note else ''}",
        ]
    )
    table = a.table or a.out / "recipes.md"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("# CamVid recipe variants (`python -m experiments.camvid_recipes`)\n\n" + render(rows, note))
    print(f"table written to {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
