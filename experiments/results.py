"""Results from run folders alone: the paper table, the CamVid study's page, the recipe sweep's table.

    python -m experiments.results RUN_DIRS... > table.md          # paper table (experiments/README.md)
    python -m experiments.results --study outputs/study2 --out docs/results.md    # study.dir of conf/study's phases
        [--null outputs/study2_null] [--front outputs/study2_t120000 --front outputs/study2_t300000] [--notes F]
    python -m experiments.results --recipes outputs/camvid_recipes --out docs/camvid_recipes.md
    python -m experiments.results --decide outputs/camvid_study/decide

One reader of what runs leave behind: metrics.json (stage=eval), pipeline.json, train.json, the csv
log (csv/metrics.csv), the done markers' wall/CPU seconds (`done.json` of rspnet.utils.run_record, or
the `done` of the older study runner), checkpoint metadata and the architecture's provenance (rspnet.architecture).

Paper table: a run is a folder with the `config.yaml` rspnet saves. Its mIoU comes from, in order:
metrics.json, pipeline.json, train.json, the csv log (best `val/miou`, else best `select/miou` as the
searches log). The last two are skipped when train.json says validation ran on the held-out slice of
train (`train.select`), which is not the reported split. W&B's own files are not read: a run logged to
W&B gives its numbers here through the csv logger beside it (`logger=wandb extra_loggers=[csv]`).
Each run's budgets (epochs of cell search, macro search and training, as run) and the provenance of its
architecture (searched | random | preset | unknown) are recorded; only a run on a searched architecture
with at least the paper's budgets (PAPER_BUDGETS) is filed under a paper row, a run with a paper row's
setting that falls short is listed below the table with the reason; rows no run matches say "not run here".

Recipe table: one row per job folder of a recipe sweep (`hparams_search=camvid_recipes`, the
folder named after the variant's overrides; docs/camvid_recipes.md): val mIoU (eval/metrics.json),
held-out mIoU (train/train.json, the selection split), per-class IoU, params, wall and CPU time (the
done markers); the variant with the best held-out mIoU is marked, val is never used to choose.

Search-decide table: one row per search-recipe attempt of a `hparams_search=search_decide` sweep (the
job folders without their seed): mean alpha entropy, top-1 weight and margin, seed agreement, the cells.

Study page: reads the folder of the study's Hydra phases (conf/study: `rspnet -m experiment=camvid_study
study=cell|macro|sample|train|eval`, each phase one sweep dir under `study.dir`): its arms are the train
phase's job folders `train/<arm>/t<seed>` (an arm is a folder under the study dir holding genotype.json +
macro.json, `macro/s<seed>` searched or `sample/r<seed>` random, its group read from the architecture's
provenance), each scored by the eval phase's twin folder `eval/<arm>/t<seed>/metrics.json`. A study of the
older runner (round 1: OUT/study.json, its plan) is read as it was written. The page: the table of every
arm (val mIoU mean ± std over training seeds, params, GFLOPs, wall and CPU time), the searched arms' rank
among the random ones, the search's entropies, and pictures under --img (default: docs/img/results next to --out).
A study of the phases also gets round 2's sections (experiments/study_sections.py): the searched-vs-random
statistics on architecture means, the gate against the null searches (`--null DIR`, default `<study>_null`),
the cost-accuracy front over this and further targets' study dirs (`--front DIR`, repeated) and the per-class
IoU of the best searched and best random architecture; `--notes FILE` adds a hand-written section.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bench.common import REPO, device_info, emit, md_table
from rspnet.architecture import arch_provenance, search_epochs
from rspnet.resources import genotype_path, shipped_genotypes
from rspnet.search_space.evidence import decisiveness

GROUP_COLOURS = {
    "random": "tab:grey",
    "searched": "tab:red",
    "variant": "tab:orange",
    "ablation": "tab:blue",
    "baseline": "tab:green",
}


def _json(path: Path) -> dict | None:
    """JSON file contents, or None if missing/unreadable (a half-written run is skipped, not fatal)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def timing(*dirs: Path) -> tuple[float, float] | None:
    """Wall and CPU seconds summed over the done markers of the given run folders (None: none finished).

    A folder's marker is the study scheduler's `done` (its job's whole process tree), else rspnet's `done.json`
    (rspnet.utils.run_record: the run's own process and its ended children)."""
    marks = [m for d in dirs if (m := _json(d / "done") or _json(d / "done.json"))]
    return (sum(m["wall_s"] for m in marks), sum(m["cpu_s"] for m in marks)) if marks else None


# ---- the paper table (experiments/README.md "Results") ----

FINAL_STAGES = {"train", "eval", "pipeline"}  # search stages report supernet mIoU, not the paper's
SUB_STAGES = ("cell_search", "macro_search", "train")
# epochs per stage of the paper's protocol (conf/experiment/rsp_ablation.yaml): 300 cell-search
# and 40 macro-search epochs (paper), the HRNetV2/OCR Cityscapes schedule for training
PAPER_BUDGETS = {"cell_search": 300, "macro_search": 40, "train": 484}


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table and how a run is recognised as reproducing it."""

    table: str
    row: str
    miou: float
    params: float
    rsp: bool
    head: str
    pretrain: bool
    command: str


PAPER_ROWS = (
    PaperRow(
        "Table 1", "Ours", 81.4, 68.67, False, "fcn", False, "rspnet experiment=rsp_ablation hydra/launcher=slurm"
    ),
    PaperRow(
        "Table 1", "Ours + RSP", 81.0, 17.20, True, "fcn", False, "rspnet experiment=rsp_ablation hydra/launcher=slurm"
    ),
    PaperRow(
        "Table 2",
        "Ours (Mapillary)",
        82.1,
        68.67,
        False,
        "fcn",
        True,
        "rspnet experiment=mapillary_pretrain rsp=off genotype=G macro_arch=M; "
        "rspnet experiment=cityscapes_finetune rsp=off genotype=G macro_arch=M ckpt=...",
    ),
    PaperRow(
        "Table 2",
        "Ours + RSP (Mapillary)",
        81.7,
        17.20,
        True,
        "fcn",
        True,
        "rspnet experiment=mapillary_pretrain genotype=G macro_arch=M; "
        "rspnet experiment=cityscapes_finetune genotype=G macro_arch=M ckpt=...",
    ),
    PaperRow(
        "Table 3",
        "Ours + OCR",
        83.2,
        float("nan"),
        False,
        "ocr",
        False,
        "rspnet experiment=ocr_ablation hydra/launcher=slurm genotype=G macro_arch=M",
    ),
    PaperRow(
        "Table 3",
        "Ours + RSP + OCR",
        82.5,
        float("nan"),
        True,
        "ocr",
        False,
        "rspnet experiment=ocr_ablation hydra/launcher=slurm genotype=G macro_arch=M",
    ),
)


@dataclass
class Run:
    """What one local run produced."""

    path: Path
    stage: str = "?"
    dataset: str = "?"
    rsp: bool | None = None
    head: str = "?"
    pretrain: bool = False
    miou: float | None = None
    source: str = ""
    params: float | None = None
    tags: list[str] = field(default_factory=list)
    epochs: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(SUB_STAGES))
    arch: dict[str, str] = field(default_factory=lambda: {"genotype": "unknown", "macro": "unknown"})


# val mIoU, else the selection split's (runs before `select/miou` logged it as `val/miou`)
MIOU_KEYS = ("val/miou", "select/miou")


def _csv_best(path: Path) -> float | None:
    """Best value of the first of MIOU_KEYS in a Lightning CSV log."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return None
    for key in MIOU_KEYS:
        try:
            values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        except ValueError:
            return None
        if values:
            return max(values)
    return None


def _describe(run: Run, cfg: dict[str, Any]) -> None:
    """Fill stage/dataset/rsp/head/pretraining from a resolved config dict."""
    get = lambda *keys: _dig(cfg, keys)  # noqa: E731
    run.stage = str(get("stage", "name") or "?")
    run.dataset = str(get("dataset", "name") or "?")
    run.rsp = get("rsp", "enabled")
    run.head = str(get("head", "name") or "?")
    run.tags = list(dict.fromkeys(str(t) for t in [*(get("tags") or []), *(get("logger", "tags") or [])]))
    run.pretrain = bool(get("train", "init_ckpt")) or ("pretrain-mapillary" in run.tags and run.dataset != "mapillary")


def _dig(d: Any, keys: Iterable[str]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def read_run(path: Path) -> Run:
    """Read one run folder (an rspnet output dir)."""
    run = Run(path)
    cfg: dict[str, Any] = {}
    if (path / "config.yaml").is_file():
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False)
        _describe(run, cfg)
    _budgets_and_provenance(run, cfg)
    sources: list[tuple[str, Any]] = []
    if (m := _json(path / "metrics.json")) is not None:
        sources.append(("metrics.json", m.get("miou")))
    if (p := _json(path / "pipeline.json")) is not None:
        sources.append(("pipeline.json", p.get("miou")))
        run.params = p.get("params")
    held_out = False
    if (t := _json(path / "train.json")) is not None:
        # since train.select: validation during training ran on a held-out slice of train, not val
        held_out = (t.get("selection") or {}).get("split", "val") != "val"
        if not held_out:
            sources.append(("train.json", t.get("best_val_miou")))
        run.params = run.params or t.get("params")
    if not held_out:
        sources.append(("csv/metrics.csv", _csv_best(path / "csv" / "metrics.csv")))
    for name, value in sources:
        if isinstance(value, (int, float)):
            run.miou, run.source = float(value), name
            break
    return run


def _from_artifacts(run: Run, genotype: Any, macro: Any, macro_default: str = "preset") -> None:
    """Search epochs and provenance read from the genotype/macro files a run used (no macro file: default_macro)."""
    if genotype and not Path(str(genotype)).exists() and str(genotype) in shipped_genotypes():
        genotype = genotype_path(str(genotype))  # `genotype=paper_like`
    run.epochs["cell_search"] = search_epochs(genotype)
    run.epochs["macro_search"] = search_epochs(macro)
    run.arch = arch_provenance(genotype, macro, no_macro=macro_default)


def _recorded(run: Run, record: dict[str, Any] | None) -> bool:
    """Take arch_provenance (and per-stage epochs) from a stage's JSON when it has them."""
    prov = (record or {}).get("arch_provenance")
    if isinstance(prov, dict) and {"genotype", "macro"} <= prov.keys():
        run.arch = {"genotype": str(prov["genotype"]), "macro": str(prov["macro"])}
    epochs = (record or {}).get("epochs")
    if isinstance(epochs, dict):
        run.epochs |= {k: v for k, v in epochs.items() if k in SUB_STAGES and isinstance(v, int)}
    return isinstance(prov, dict)


def _budgets_and_provenance(run: Run, cfg: dict[str, Any]) -> None:
    """Fill run.epochs / run.arch from the run's JSON records, else from the artifacts its config names."""
    path = run.path
    if run.stage == "pipeline":
        p = _json(path / "pipeline.json") or {}
        if not _recorded(run, p):  # older pipeline.json: read the stage folders
            _from_artifacts(
                run,
                path / "cell_search" / "genotype.json",
                path / "macro_search" / "macro.json",
                macro_default="unknown",
            )
            run.epochs["train"] = (_json(path / "train" / "train.json") or {}).get("epochs")
        return
    if run.stage == "eval":  # the checkpoint's training run knows the budgets: <train>/checkpoints/x.ckpt
        ckpt = cfg.get("ckpt")
        train_dir = Path(str(ckpt)).parent.parent if ckpt else None
        if train_dir is not None and (train_dir / "config.yaml").is_file() and train_dir != path:
            trained = read_run(train_dir)
            run.epochs, run.arch = trained.epochs, trained.arch
        _recorded(run, _json(path / "metrics.json"))
        return
    if run.stage == "train":
        macro = cfg.get("macro_arch")
        _from_artifacts(run, cfg.get("genotype"), None if macro in (None, "default_macro") else macro)
        t = _json(path / "train.json") or {}
        run.epochs["train"] = t.get("epochs") if isinstance(t.get("epochs"), int) else None
        _recorded(run, t)


def shortfalls(run: Run) -> list[str]:
    """Why a run with a paper row's setting is not filed under it (empty: it is)."""
    why = []
    if set(run.arch.values()) != {"searched"}:
        why.append(f"architecture not searched (genotype: {run.arch['genotype']}, macro: {run.arch['macro']})")
    for stage, need in PAPER_BUDGETS.items():
        done = run.epochs.get(stage)
        if done is None:
            why.append(f"{stage} epochs unknown")
        elif done < need:
            why.append(f"{stage} {done}/{need} epochs")
    return why


SKIP = {".hydra", "checkpoints", "csv", "files", "logs", ".submitit", "wandb"}


def find_runs(roots: Iterable[Path]) -> list[Run]:
    """Every run under the given folders; a pipeline's per-stage subfolders are not separate runs."""
    runs: list[Run] = []

    def walk(d: Path) -> None:
        if (d / "config.yaml").is_file():
            runs.append(read_run(d))
            if (d / "pipeline.json").is_file():
                return
        for child in sorted(c for c in d.iterdir() if c.is_dir() and c.name not in SKIP):
            walk(child)

    for root in roots:
        walk(Path(root))
    return runs


def _matches(row: PaperRow, run: Run) -> bool:
    return (
        run.stage in FINAL_STAGES
        and run.dataset == "cityscapes"
        and run.rsp is row.rsp
        and run.head == row.head
        and run.pretrain == row.pretrain
        and run.miou is not None
    )


def _pct(value: float | None) -> str:
    return "not run here" if value is None else f"{100 * value:.1f}"


def _m(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value / 1e6:.2f}" if value > 1000 else f"{value:.2f}"


def _epochs(run: Run) -> str:
    return " / ".join("?" if run.epochs.get(s) is None else str(run.epochs[s]) for s in SUB_STAGES)


def _arch(run: Run) -> str:
    g, m = run.arch["genotype"], run.arch["macro"]
    return g if g == m else f"{g} cell, {m} macro"


def paper_table(runs: list[Run]) -> str:
    """The README results table (paper rows, held-back runs, then our other runs) as markdown."""
    lines = [
        "| Paper | Row | Paper mIoU (%) | Paper params (M) | Command | Our mIoU (%) | Our params (M) | Runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    used: set[Path] = set()
    held: list[tuple[PaperRow, Run]] = []
    for row in PAPER_ROWS:
        matched = [r for r in runs if _matches(row, r)]
        hits = [r for r in matched if not shortfalls(r)]
        held += [(row, r) for r in matched if shortfalls(r)]
        best = max(hits, key=lambda r: r.miou or 0.0) if hits else None
        used.update(r.path for r in matched)
        lines.append(
            f"| {row.table} | {row.row} | {row.miou:.1f} | {_m(row.params)} | `{row.command}` | "
            f"{_pct(best.miou if best else None)} | {_m(best.params) if best else '–'} | {len(hits)} |"
        )
    lines.append(
        f"\nPaper rows take only runs on a searched architecture with at least the paper's budgets "
        f"(epochs cell search / macro search / train: {' / '.join(str(PAPER_BUDGETS[s]) for s in SUB_STAGES)})."
    )
    if held:
        lines += [
            "",
            "Not filed under a paper row (same setting, but unsearched or under budget):",
            "",
            "| Run | Setting of | mIoU (%) | Params (M) | Epochs (cell / macro / train) | Architecture | Why not |",
            "|---|---|---|---|---|---|---|",
        ]
        for row, r in held:
            lines.append(
                f"| `{r.path}` | {row.table} {row.row} | {_pct(r.miou)} | {_m(r.params)} | {_epochs(r)} | "
                f"{_arch(r)} | {'; '.join(shortfalls(r))} |"
            )
    others = [r for r in runs if r.path not in used and r.miou is not None]
    if others:
        lines += [
            "",
            "Other local runs (not paper rows):",
            "",
            "| Run | Stage | Dataset | RSP | Head | Pretrained | mIoU (%) | Params (M) | Epochs (cell / macro / train) "
            "| Architecture | From |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(others, key=lambda r: str(r.path)):
            rsp = "?" if r.rsp is None else ("on" if r.rsp else "off")
            lines.append(
                f"| `{r.path}` | {r.stage} | {r.dataset} | {rsp} | {r.head} | {'yes' if r.pretrain else 'no'} | "
                f"{_pct(r.miou)} | {_m(r.params)} | {_epochs(r)} | {_arch(r)} | {r.source} |"
            )
    return "\n".join(lines) + "\n"


# ---- the recipe sweep's table (docs/camvid_recipes.md) ----


def recipe_rows(sweep: Path) -> list[dict[str, Any]]:
    """One row per finished variant folder of a recipe sweep: a pipeline job, or its train/ and eval/ phases."""
    rows = []
    for d in sorted(p for p in Path(sweep).iterdir() if p.is_dir()):
        metrics = _json(d / "eval" / "metrics.json")
        train = _json(d / "train" / "train.json") or {}
        if metrics is None:
            continue
        clocks = timing(d) if (d / "pipeline.json").is_file() else timing(d / "train", d / "eval")
        rows.append(
            {
                "name": d.name,
                "miou": metrics.get("miou"),
                "iou_per_class": metrics.get("iou_per_class") or {},
                "selection_miou": train.get("best_val_miou"),
                "params": train.get("params"),
                "wall_s": clocks and clocks[0],
                "cpu_s": clocks and clocks[1],
            }
        )
    return rows


def chosen(rows: list[dict[str, Any]]) -> str | None:
    """The variant with the best held-out mIoU (the selection split; val is never looked at), or None."""
    scored = [r for r in rows if isinstance(r.get("selection_miou"), (int, float))]
    return max(scored, key=lambda r: r["selection_miou"])["name"] if scored else None


def recipe_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: one row per variant (the chosen one marked *), per-class IoU columns."""
    classes = list(dict.fromkeys(c for r in rows for c in r["iou_per_class"]))
    head = ["variant", "val mIoU (%)", "held-out mIoU (%)", *classes, "params (M)", "wall (min)", "CPU (min)"]
    best = chosen(rows)
    lines = [f"Chosen on the held-out column: **{best}** (marked *); val was not used to choose.", ""] if best else []
    table = [
        [
            f"`{r['name']}`" + (" *" if r["name"] == best else ""),
            _fmt(r["miou"], 1, 100),
            _fmt(r["selection_miou"], 1, 100),
            *(_fmt(r["iou_per_class"].get(c), 1, 100) for c in classes),
            _fmt(r["params"] and r["params"] / 1e6, 3),
            _fmt(r["wall_s"] and r["wall_s"] / 60, 1),
            _fmt(r["cpu_s"] and r["cpu_s"] / 60, 1),
        ]
        for r in rows
    ]
    return "\n".join([*lines, md_table(head, table)]) + "\n"


# ---- the CamVid study's page (docs/results.md) ----


def gflops_of(ckpt: Path) -> float | None:
    """GFLOPs of a training checkpoint's network at its crop size: an rspnet net built on the meta device,
    another net of the `net` group (the study's baseline) rebuilt from the checkpoint."""
    from rspnet.genotype import Genotype, MacroArch
    from rspnet.lit.seg_module import SegModule
    from rspnet.models.cost import count_gflops, summarize
    from rspnet.utils.checkpoint import read_checkpoint

    meta = read_checkpoint(ckpt).get("rspnet") or {}
    cfg = OmegaConf.create(meta.get("config") or {})
    if meta.get("genotype"):
        return summarize(cfg, Genotype.from_dict(meta["genotype"]), MacroArch.from_dict(meta["macro"]))["gflops"]
    if (meta.get("net") or {}).get("name") in (None, "rspnet") or "crop_size" not in cfg.get("dataset", {}):
        return None
    module, _ = SegModule.from_checkpoint(ckpt)
    return round(count_gflops(module.net, tuple(int(v) for v in cfg.dataset.crop_size)), 3)


def eval_dir(study: Path, run: str) -> Path:
    """The eval job of a training run: the eval phase's twin folder (train/A/t0 -> eval/A/t0), else the older
    runner's `eval/` inside the run folder."""
    twin = study / "eval" / Path(run).relative_to("train") if run.startswith("train/") else None
    return twin if twin is not None and twin.is_dir() else study / run / "eval"


def run_record(study: Path, run: str) -> dict[str, Any]:
    """mIoU, params, GFLOPs, wall/CPU seconds (train + eval) of one training run; missing values None."""
    d, ev = study / run, eval_dir(study, run)
    metrics = _json(ev / "metrics.json") or _json(d / "metrics.json")  # every arm | older baselines
    train = _json(d / "train.json") or {}
    clocks = timing(d, ev)
    ckpt = d / "checkpoints" / "last.ckpt"
    gflops = train.get("gflops")
    if gflops is None and ckpt.is_file() and metrics:
        gflops = gflops_of(ckpt)
    return {
        "miou": (metrics or {}).get("miou"),
        "params": train.get("params"),
        "gflops": gflops,
        "wall_s": clocks and clocks[0],
        "cpu_s": clocks and clocks[1],
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
        search = timing(*(study / j for j in arm["search_jobs"]))
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
                "search_wall_s": search and search[0],
            }
        )
    return rows


PHASES = ("cell", "macro", "sample", "train", "eval", "profile")  # conf/study, in the order they run
GROUPS = ("searched", "random")  # the compared groups: an arm's group is its architecture's provenance
PROTOCOL_ANCHOR = "camvid-study-round-2-issue-26-protocol-written-before-the-runs"  # experiments/README.md


def phase_plan(study: Path) -> dict[str, Any] | None:
    """The plan of a study run as Hydra phases (conf/study), in the older runner's shape: its arms are the
    train phase's job folders `train/<arm>/t<seed>`, its search jobs the finished cell/macro jobs. None: no
    training job yet."""
    train = study / "train"
    runs = sorted(p.parent for p in train.rglob("config.yaml") if re.fullmatch(r"t\d+", p.parent.name))
    if not runs:
        return None
    arms: dict[str, dict[str, Any]] = {}
    for run in runs:
        name = run.parent.relative_to(train).as_posix()
        arm = arms.setdefault(name, _phase_arm(study, name))
        arm["runs"][int(run.name[1:])] = run.relative_to(study).as_posix()
    searches = [d for ph in ("cell", "macro") for d in sorted((study / ph).glob("*")) if (d / "done.json").is_file()]
    phases = {ph: _phase_command(study / ph) for ph in PHASES if (study / ph / "multirun.yaml").is_file()}
    jobs = {ph: _job_overrides(study / ph) for ph in phases}
    commands = _phases_command(jobs, {ph: c[1] for ph, c in phases.items()})
    return {
        "debug": any(a.startswith("debug=") for c in phases.values() for a in c[1]),
        "commands": commands,  # one line per phase (the `S=` line first when rebuilt from the jobs)
        "command": " ; ".join(commands),  # the older runner's study.json shape: one string
        "epochs": {ph: c[0] for ph, c in phases.items() if c[0] is not None},
        "jobs": [{"name": d.relative_to(study).as_posix(), "kind": "rspnet", "deps": []} for d in searches],
        "arms": list(arms.values()),
        "phases": list(phases),
    }


def _phase_arm(study: Path, name: str) -> dict[str, Any]:
    """An arm of the train phase: `macro/s0` (searched: its cell and macro search jobs), `sample/r1000` (random)."""
    from rspnet.architecture import provenance

    group = provenance(study / name / "genotype.json")  # searched | random (| preset ...)
    seed = re.fullmatch(r"[sr](\d+)", Path(name).name)
    cell = f"cell/{Path(name).name}"
    label = {
        "searched": f"searched (cell + macro search, search seed {seed and seed.group(1)})",
        "random": f"random (sample_arch seed {seed and seed.group(1)}, at the searches' target)",
    }.get(group, f"{group} architecture")
    jobs = [cell, name] if group == "searched" and (study / cell).is_dir() else []
    return {"name": name, "group": group, "label": label, "runs": {}, "search_jobs": jobs}


def _job_overrides(sweep: Path) -> list[list[str]]:
    """Each job's command-line overrides in a phase folder (Hydra's `<job>/.hydra/overrides.yaml`): every sweep
    launched into it, where multirun.yaml keeps only the last one."""
    return [
        [str(a) for a in OmegaConf.load(f)]
        for f in sorted(sweep.rglob(".hydra/overrides.yaml"))
        if f.parent.parent != sweep
    ]


def _values(values: set[str]) -> str:
    """A swept key's values as Hydra writes them: `range(a,b)` for a run of integers, else a comma list."""
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        ints = sorted(int(v) for v in values)
        if len(ints) > 2 and ints == list(range(ints[0], ints[-1] + 1)):
            return f"'range({ints[0]},{ints[-1] + 1})'"
        return ",".join(map(str, ints))
    return ",".join(sorted(values))


def _phases_command(jobs: dict[str, list[list[str]]], last_sweep: dict[str, list[str]]) -> list[str]:
    """The phases' commands, rebuilt from their jobs: the overrides every job shares as `$S`, then per phase its
    swept keys with the values its jobs took, and how many of their combinations ran (a phase launched as
    several sweeps, e.g. searched and random arms with different seed lists, is not one product). A phase
    without job records gives its last sweep's command (`last_sweep`: multirun.yaml's overrides)."""
    every = [set(j) for js in jobs.values() for j in js]
    if not every:
        return [f"rspnet -m {' '.join(args)}" for args in last_sweep.values()]
    common = [a for a in next(j for js in jobs.values() for j in js) if all(a in j for j in every)]
    common = [a for a in common if not a.startswith("study=")]
    parts = [f'S="{" ".join(common)}"']
    for phase, js in jobs.items():
        if not js:
            parts.append(f"rspnet -m {' '.join(last_sweep[phase])}")
            continue
        swept: dict[str, set[str]] = {}
        for job in js:
            for a in job:
                if a not in common and "=" in a and not a.startswith("study="):
                    key, value = a.split("=", 1)
                    swept.setdefault(key, set()).add(value)
        combos = math.prod(len(v) for v in swept.values())
        args = " ".join(f"{k}={_values(v)}" for k, v in swept.items())
        count = f"{len(js)} jobs" + (f" of the {combos} combinations" if combos != len(js) else "")
        parts.append(f"rspnet -m $S study={phase} {args}".rstrip() + f"  # {count}")
    return parts


def _phase_command(sweep: Path) -> tuple[int | None, list[str]]:
    """A phase's budget (trainer.max_epochs of its jobs) and its command-line overrides, from multirun.yaml."""
    cfg = OmegaConf.load(sweep / "multirun.yaml")
    args = [str(a) for a in OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []]
    stage = OmegaConf.select(cfg, "stage.name", default="")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None, throw_on_resolution_failure=False)
    return (epochs if stage in ("cell_search", "macro_search", "train") else None), args


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
    """The pooled training-seed SD of the arms with >= 2 seeds (within-arm variances weighted by their degrees
    of freedom; the mean of the SDs is biased low): the noise a difference between arms must beat."""
    from experiments.stats import pooled_variance

    pooled = pooled_variance([(len(r["mious"]), r["std"]) for r in rows if r["std"] is not None])
    return math.sqrt(pooled[0]) if pooled else None


def group_comparison(rows: list[dict]) -> tuple[Any, dict[str, int]] | None:
    """Searched vs random on architecture-level means in points (experiments/stats.py `compare`, round 2's
    protocol) and each group's number of runs; None with fewer than 2 finished architectures a group."""
    from experiments.stats import compare

    groups = {g: [[100 * m for m in r["mious"]] for r in rows if r["group"] == g and r["mious"]] for g in GROUPS}
    if min(len(v) for v in groups.values()) < 2:
        return None
    return compare(groups["searched"], groups["random"]), {g: sum(len(a) for a in v) for g, v in groups.items()}


def comparison_lines(rows: list[dict], compared: tuple[Any, dict[str, int]] | None = None) -> list[str]:
    """The comparison's table and verdict (`compared`: `group_comparison(rows)`, computed when not given); []
    with fewer than 2 finished architectures a group."""
    compared = compared or group_comparison(rows)
    if compared is None:
        return []
    c, seeds = compared
    return [
        "Architecture-level means (each architecture's mean over its training seeds; experiments/stats.py):",
        "",
        md_table(
            [
                "searched (archs / runs)",
                "random (archs / runs)",
                "searched mean (%)",
                "random mean (%)",
                "difference (points) [95 % CI]",
                "Welch p (one-sided)",
                "permutation p",
                "vs random average",
            ],
            [
                [
                    f"{c.searched_archs} / {seeds['searched']}",
                    f"{c.random_archs} / {seeds['random']}",
                    f"{c.searched_mean:.2f}",
                    f"{c.random_mean:.2f}",
                    f"{c.difference:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]",
                    f"{c.welch_p:.3g}",
                    f"{c.permutation_p:.3g}",
                    f"{c.relative_improvement:+.1f} %",
                ]
            ],
        ),  # fmt: skip
        "",
        f"Verdict (protocol: experiments/README.md, round 2): **{c.verdict}**.",
        "",
    ]


def search_rows(study: Path, plan: dict) -> list[list[Any]]:
    """Search jobs: time and the entropies that say whether the search decided anything."""
    rows = []
    for job in plan["jobs"]:
        name = job["name"]
        if not name.startswith(("search/", "cell/", "macro/")):
            continue
        clocks = timing(study / name)
        # a macro search's folder also holds the cell it read (genotype.json): its own artifact is macro.json
        art = _json(study / name / "macro.json") or _json(study / name / "genotype.json") or {}
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
                _fmt(clocks and clocks[0] / 60, 1),
                _fmt(clocks and clocks[1] / 60, 1),
            ]
        )
    return rows


def edge_stats(genotype: dict[str, Any]) -> dict[str, Any]:
    """Entropy, top-1 weight and top-1 minus top-2 margin of each edge's op weights (means over edges,
    `evidence.decisiveness`), and the ops."""
    mean = decisiveness([e["weights"] for e in genotype["edges"]])["mean"]
    return {
        "entropy": mean["entropy"],
        "top1": mean["top1"],
        "margin": mean["margin"],
        "ops": [e["op"] for e in genotype["edges"]],
    }


def agreement(ops: list[list[str]]) -> float:
    """Mean over seed pairs of the fraction of edges with the same op (1 = every seed found the same cell;
    `experiments.search_signal.pairwise`), nan for a single seed."""
    from experiments.search_signal import pairwise

    value = pairwise(ops)
    return float("nan") if value is None else value


def attempt_of(job: str) -> str:
    """The attempt a search-decide job folder belongs to: its name without the seed
    (`search.arch_adam_lr=0.03,seed=1` -> `search.arch_adam_lr=0.03`; the older runner's `cell_adam003_s1` -> `adam003`)."""
    name = re.sub(r"(^|,)seed=\d+(?=,|$)", "", job).strip(",")
    return re.sub(r"_s\d+$", "", name.removeprefix("cell_")) if name == job else name or "(base)"


def decide_table(sweep: Path) -> str:
    """Markdown: one row per search-recipe attempt (seeds pooled), from the finished cell searches of a
    `hparams_search=search_decide` sweep (their genotype.json and done markers). Train-only statistics."""
    rows: dict[str, list[tuple[dict, tuple[float, float]]]] = {}
    for d in sorted(p for p in Path(sweep).iterdir() if p.is_dir()):
        genotype, clocks = _json(d / "genotype.json"), timing(d)
        if genotype and clocks:
            rows.setdefault(attempt_of(d.name), []).append((edge_stats(genotype), clocks))
    lines = [
        "| attempt | seeds | alpha entropy (mean) | top-1 weight | margin top-1 - top-2 | "
        "seed agreement (edges) | cells (edges 0-1, 0-2, 1-2) | wall / CPU per search (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for attempt, recs in rows.items():
        stats = [r[0] for r in recs]
        mean = {k: statistics.fmean(s[k] for s in stats) for k in ("entropy", "top1", "margin")}
        wall, cpu = (statistics.fmean(r[1][i] for r in recs) / 60 for i in (0, 1))
        lines.append(
            f"| `{attempt}` | {len(recs)} | {mean['entropy']:.3f} | {mean['top1']:.3f} | {mean['margin']:.3f} | "
            f"{agreement([s['ops'] for s in stats]):.2f} | {'; '.join('/'.join(s['ops']) for s in stats)} | "
            f"{wall:.1f} / {cpu:.1f} |"
        )
    return "\n".join(lines) + "\n"


def decide_section(study: Path) -> list[str]:
    """The search-recipe attempts (the search_decide sweep, run into STUDY/decide) and the searched cells' agreement."""
    lines = []
    decide = study / "decide"
    written = decide / "decide.md"  # the table of the older runner, as it wrote it
    table = written.read_text().strip() if written.is_file() else decide.is_dir() and decide_table(decide).strip()
    if table and table.count("\n") > 1:
        lines += [
            "### Search-recipe attempts (cell search only, before any training)",
            "",
            "Each attempt a row (`rspnet experiment=camvid_study hparams_search=search_decide`): decisiveness and "
            "agreement between search seeds, measured on train only; the study's recipe was chosen from this table, "
            "not from val.",
            "",
            table,
            "",
        ]
    cells = [_json(study / f"cell/s{s}" / "genotype.json") or _json(study / f"search/cell_s{s}" / "genotype.json")
             for s in range(3)]  # fmt: skip
    if all(cells[:2]) and not cells[2]:  # round 1's pair of seeds (more seeds: the gate section's agreement)
        cells = cells[:2]
        ops = [[e["op"] for e in c["edges"]] for c in cells]
        lines += [
            f"The study's two cell searches (seeds 0, 1) agree on {agreement(ops):.0%} of the edges "
            f"({' / '.join(ops[0])} vs {' / '.join(ops[1])}; chance: 20 % per edge).",
            "",
        ]
    return lines


def _fmt(v: Any, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if v is None or v is False else f"{v * scale:.{digits}f}"


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
    arch = (
        study / "macro" / "s0"
        if (study / "macro" / "s0" / "genotype.json").is_file()
        else study / "arch" / "searched_s0"
    )
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


def _arm_lines(rows: list[dict]) -> list[str]:
    """The "Every arm" table: seeds, mean ± SD val mIoU, cost and time of each arm."""
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
    header = ["arm", "group", "what", "seeds", "val mIoU (%)", "params (M)", "GFLOPs", "wall (min)", "CPU (min)"]
    return ["## Every arm", "", md_table(header, table), ""]


def _rank_lines(rows: list[dict], round2: bool) -> list[str]:
    """Each searched arm's rank among the random ones and its difference to their mean. Round 1's goal column
    (>= +1.0 and above the random arms' 90th percentile) only on round 1's page: round 2 tests the groups."""
    v = verdict(rows)
    if not v:
        return [] if round2 else ["No finished searched and random arms yet.", ""]
    header = ["searched arm", "mIoU (%)", "rank among random", "random mean (%)", "difference (points)"]
    if not round2:
        header += ["random 90th pct (%)", "goal (≥ +1.0 and > p90)"]
    table = [
        [x["arm"], _fmt(x["miou"], 2, 100), f"{x['rank']} of {x['of']}", _fmt(x["random_mean"], 2, 100),
         f"{100 * x['diff']:+.2f}"]
        + ([] if round2 else [_fmt(x["p90"], 2, 100), "met" if x["goal_met"] else "not met"])
        for x in v
    ]  # fmt: skip
    intro = (
        ["Per searched architecture (its mean over training seeds), its rank among the random ones — a "
         "description; the test is the table above:", ""]
        if round2 else []
    )  # fmt: skip
    return intro + [md_table(header, table), ""]


def _spread_lines(rows: list[dict]) -> list[str]:
    spread = seed_spread(rows)
    if spread is None:
        return []
    return [
        f"Training-seed noise: the arms trained with 2 or more seeds differ between their seeds by "
        f"{100 * spread:.2f} points (pooled SD); differences between arms smaller than that are not "
        "resolved by this study.",
        "",
    ]


def render(
    study: Path, out: Path, img: Path, null: Path | None = None, fronts: Iterable[Path] = (), notes: Path | None = None
) -> str:
    """The markdown page (pictures written to `img`). `null`: the null searches' study dir (the gate; default the
    sibling `<study>_null` when it exists); `fronts`: study dirs of further resource targets (the front);
    `notes`: a hand-written markdown file placed after the verdict (e.g. what changed since an earlier round)."""
    from experiments import study_sections

    plan = _json(study / "study.json") or phase_plan(study)
    if plan is None:
        raise SystemExit(
            f"results: error: --study {study}: no finished training job under {study / 'train'}; run the study's "
            "phases first (rspnet -m experiment=camvid_study study=cell ... study=eval, with study.dir set to it)"
        )
    rows = arm_rows(study, plan)
    pics = figures(study, rows, img)
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    info = device_info()
    lines = ["# Does the search matter? CamVid: searched vs random architectures", ""]
    if plan.get("debug"):
        lines += [
            "> **PLACEHOLDER produced by a debug run** (`debug=` / the older `--debug`: synthetic data, 1 epoch, "
            "2 batches): these numbers "
            "are a dry run of the pipeline and say nothing about the search.",
            "",
        ]
    fronts = list(fronts)
    extra = (f" --null {null}" if null else "") + "".join(f" --front {f}" for f in fronts)
    extra += f" --notes {notes}" if notes else ""
    page_cmd = (
        f"Page: `python -m experiments.results --study {study}{extra} --out {out}` on {info['cpu']} "
        f"({info['cores']} cores), "
    )
    if plan.get("phases") and plan.get("commands", [""])[0].startswith("S="):  # rebuilt from the jobs
        block = "\n".join(plan["commands"])
        lines += [f"Study (epochs {plan['epochs']}), its phases as run:", "", "```bash", block, "```", ""]
        lines += [page_cmd + f"{info['date']}.", ""]
    else:
        lines += [f"Study: `{plan['command']}` — epochs {plan['epochs']}. " + page_cmd + f"{info['date']}.", ""]
    lines += [
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
    round2 = bool(plan.get("phases"))  # a study of the phases (round 2's sections) or the older runner's
    lines += [
        "Random arms are drawn at the searches' resource target (`search.target_params`, ±10 %); the searches are "
        "held to it softly — every arm's params are in the table."
        if round2
        else "Random arms are parameter-matched (±20 %) to `searched_s0`; `searched_s1` (another search seed) may "
        "fall outside that band — its params are in the table.",
        "",
    ]
    if round2:
        sibling = study.with_name(study.name + "_null")
        null = null or (sibling if sibling.is_dir() else None)
        studies, front_commands = [(study, rows)], []
        for extra in fronts:
            extra_plan = phase_plan(extra)
            if extra_plan is None:
                raise SystemExit(f"results: error: --front {extra}: no finished training job under {extra / 'train'}")
            studies.append((extra, arm_rows(extra, extra_plan)))
            front_commands += [f"# {extra.name}", *extra_plan["commands"]]
        compared = group_comparison(rows)
        gate = study_sections.gate_result(study, null)
        points = study_sections.all_points(studies)
        protocol = rel(REPO / "experiments" / "README.md") + "#" + PROTOCOL_ANCHOR
        lines += study_sections.summary_lines(compared and compared[0], gate, points, protocol)
        lines += ["## Searched vs random", ""] + (comparison_lines(rows, compared) or ["No finished arms yet.", ""])
        lines += _spread_lines(rows) + _rank_lines(rows, round2) + _arm_lines(rows)
        if notes is not None:
            lines += [notes.read_text().strip(), ""]
        lines += study_sections.gate_lines(study, null, gate)
        front, front_pics = study_sections.front_lines(studies, img, points)
        if front_commands:  # the further targets' phases, rebuilt from their jobs like the study's own
            front += ["The further targets' phases as run:", "", "```bash", *front_commands, "```", ""]
        lines += front + study_sections.per_class_lines(study, rows, eval_dir)
        lines += study_sections.cost_lines([study, *([null] if null else []), *fronts])
        pics |= front_pics
    else:
        lines += _arm_lines(rows) + ["## Searched vs random", ""] + _rank_lines(rows, round2)
        lines += comparison_lines(rows) + _spread_lines(rows)
        if notes is not None:
            lines += [notes.read_text().strip(), ""]
    lines += [
        "## Did the search decide?",
        "",
        "Normalised entropy (1 = uniform, the argmax is noise; 0 = one-hot) at the end of each search.",
        "Real searches against null searches (the same search with its signal destroyed), split-half",
        "reliability and perturbation selection: [docs/search_signal.md](search_signal.md).",
        "",
        md_table(
            ["search job", "what", "entropy", "beta entropy", "epochs", "wall (min)", "CPU (min)"],
            search_rows(study, plan),
        ),
        "",
    ]
    lines += decide_section(study)
    lines += ["## Pictures", ""] + [f"![{k}]({rel(p)})" for k, p in pics.items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run_dirs", nargs="*", type=Path, help="run / sweep folders: the paper table to stdout")
    ap.add_argument("--study", type=Path, help="the study.dir of the study's phases (conf/study): the study page")
    ap.add_argument(
        "--null", type=Path, help="--study: the null searches' study dir (default: <study>_null if present)"
    )
    ap.add_argument("--status", action="store_true", help="--study: where the study stands (jobs per phase)")
    ap.add_argument("--front", type=Path, action="append", default=[], help="--study: a study dir at another target")
    ap.add_argument("--notes", type=Path, help="--study: a markdown file placed after the verdict")
    ap.add_argument("--recipes", type=Path, help="the sweep folder of hparams_search=camvid_recipes: its table")
    ap.add_argument("--decide", type=Path, help="the sweep folder of hparams_search=search_decide: its table")
    ap.add_argument("--out", type=Path, default=None, help="the page (default docs/results.md; --recipes: stdout)")
    ap.add_argument("--img", type=Path, default=None, help="picture folder (default: img/results beside --out)")
    args = ap.parse_args(argv)
    if args.recipes is not None or args.decide is not None:
        emit(
            recipe_table(recipe_rows(args.recipes)) if args.recipes else decide_table(args.decide), args.out, "results"
        )
        return 0
    if args.study is None:
        missing = [str(p) for p in args.run_dirs if not p.is_dir()]
        if missing:
            print(f"results: error: not a folder: {', '.join(missing)}", file=sys.stderr)
            return 2
        sys.stdout.write(paper_table(find_runs(args.run_dirs)))
        return 0
    if args.status:
        from experiments.study_sections import status_lines

        sys.stdout.write("\n".join(status_lines(args.study)))
        return 0
    args.out = args.out or Path("docs/results.md")
    img = args.img or args.out.parent / "img" / "results"
    for flag, path in [("--null", args.null), ("--notes", args.notes), *(("--front", f) for f in args.front)]:
        if path is not None and not path.exists():
            print(f"results: error: {flag} {path}: no such file or folder", file=sys.stderr)
            return 2
    page = render(args.study, args.out, img, null=args.null, fronts=args.front, notes=args.notes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    print(f"results: {args.out} ({len(page.splitlines())} lines), pictures in {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
