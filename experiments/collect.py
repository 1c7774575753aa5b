"""Collect local run outputs into the results table of experiments/README.md.

    python -m experiments.collect RUN_DIRS... > table.md

A run is a folder with the `config.yaml` rspnet saves. Its mIoU comes from, in order:
metrics.json (stage=eval), pipeline.json, train.json, the CSV log (csv/metrics.csv, best
`val/miou`, else best `select/miou` as the searches log). The last two are skipped when
train.json says validation ran on the held-out slice of train (`train.select`), which is not
the reported split. W&B's own files are not read: a run logged to W&B gives its logged numbers
here through the csv logger beside it (`logger=wandb extra_loggers=[csv]`). Paper rows no run matches say "not run here".

Each run's budgets (epochs of cell search, macro search and training, as run) and the
provenance of its architecture (searched | random | preset | unknown, rspnet.architecture)
are recorded. Only a run on a searched architecture with at least the paper's budgets
(PAPER_BUDGETS) is filed under a paper row; a run with a paper row's setting that falls
short is listed below the table with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rspnet.architecture import arch_provenance, search_epochs
from rspnet.resources import genotype_path, shipped_genotypes

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


def _read_json(path: Path) -> dict[str, Any] | None:
    """JSON file contents, or None if missing/unreadable (a half-written run is skipped, not fatal)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    if (m := _read_json(path / "metrics.json")) is not None:
        sources.append(("metrics.json", m.get("miou")))
    if (p := _read_json(path / "pipeline.json")) is not None:
        sources.append(("pipeline.json", p.get("miou")))
        run.params = p.get("params")
    held_out = False
    if (t := _read_json(path / "train.json")) is not None:
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
        p = _read_json(path / "pipeline.json") or {}
        if not _recorded(run, p):  # older pipeline.json: read the stage folders
            _from_artifacts(
                run,
                path / "cell_search" / "genotype.json",
                path / "macro_search" / "macro.json",
                macro_default="unknown",
            )
            run.epochs["train"] = (_read_json(path / "train" / "train.json") or {}).get("epochs")
        return
    if run.stage == "eval":  # the checkpoint's training run knows the budgets: <train>/checkpoints/x.ckpt
        ckpt = cfg.get("ckpt")
        train_dir = Path(str(ckpt)).parent.parent if ckpt else None
        if train_dir is not None and (train_dir / "config.yaml").is_file() and train_dir != path:
            trained = read_run(train_dir)
            run.epochs, run.arch = trained.epochs, trained.arch
        _recorded(run, _read_json(path / "metrics.json"))
        return
    if run.stage == "train":
        macro = cfg.get("macro_arch")
        _from_artifacts(run, cfg.get("genotype"), None if macro in (None, "default_macro") else macro)
        t = _read_json(path / "train.json") or {}
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


def render(runs: list[Run]) -> str:
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


def main(argv: list[str] | None = None) -> int:
    """CLI: print the table for the given run folders to stdout."""
    parser = argparse.ArgumentParser(prog="python -m experiments.collect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="run / sweep folders")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.run_dirs if not p.is_dir()]
    if missing:
        print(f"collect: error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    sys.stdout.write(render(find_runs(args.run_dirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
