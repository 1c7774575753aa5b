"""Collect local run outputs into the results table of experiments/README.md.

    python -m experiments.collect RUN_DIRS... > table.md

A run is a folder with the `config.yaml` rspnet saves (or a W&B offline run folder).
Its mIoU comes from, in order: metrics.json (stage=eval), pipeline.json, train.json,
the CSV log (csv/metrics.csv, best `val/miou`), the W&B offline run (wandb/offline-run-*:
its binary log, or files/wandb-summary.json in older wandb). The last three are skipped when
train.json says validation ran on the held-out slice of train (`train.select`), which is not
the reported split. Paper rows no run matches say "not run here".
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

from experiments.wandb_offline import read_offline_run

FINAL_STAGES = {"train", "eval", "pipeline"}  # search stages report supernet mIoU, not the paper's


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
    PaperRow("Table 1", "Ours", 81.4, 68.67, False, "fcn", False, "rspnet -m experiment=rsp_ablation"),
    PaperRow("Table 1", "Ours + RSP", 81.0, 17.20, True, "fcn", False, "rspnet -m experiment=rsp_ablation"),
    PaperRow("Table 2", "Ours (Mapillary)", 82.1, 68.67, False, "fcn", True,
             "rspnet experiment=mapillary_pretrain rsp=off; rspnet experiment=cityscapes_finetune rsp=off ckpt=..."),
    PaperRow("Table 2", "Ours + RSP (Mapillary)", 81.7, 17.20, True, "fcn", True,
             "rspnet experiment=mapillary_pretrain; rspnet experiment=cityscapes_finetune ckpt=..."),
    PaperRow("Table 3", "Ours + OCR", 83.2, float("nan"), False, "ocr", False, "rspnet -m experiment=ocr_ablation"),
    PaperRow("Table 3", "Ours + RSP + OCR", 82.5, float("nan"), True, "ocr", False, "rspnet -m experiment=ocr_ablation"),
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


def _read_json(path: Path) -> dict[str, Any] | None:
    """JSON file contents, or None if missing/unreadable (a half-written run is skipped, not fatal)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _csv_best(path: Path, key: str = "val/miou") -> float | None:
    """Best value of `key` in a Lightning CSV log."""
    try:
        with path.open(newline="") as f:
            values = [float(r[key]) for r in csv.DictReader(f) if r.get(key) not in (None, "")]
    except (OSError, ValueError, KeyError):
        return None
    return max(values) if values else None


def _wandb(run_dir: Path) -> dict[str, Any]:
    """Config/summary/history of a W&B offline run; empty if it cannot be read."""
    try:
        return read_offline_run(run_dir)
    except (OSError, ValueError, ImportError):
        return {"config": {}, "summary": {}, "history": [], "artifacts": []}


def _wandb_best(run: dict[str, Any], key: str = "val/miou") -> float | None:
    """Best logged `key` over the run's history (else its summary value)."""
    values = [row[key] for row in run["history"] if isinstance(row.get(key), (int, float))]
    return max(values) if values else run["summary"].get(key)


def _describe(run: Run, cfg: dict[str, Any]) -> None:
    """Fill stage/dataset/rsp/head/pretraining from a resolved config dict."""
    get = lambda *keys: _dig(cfg, keys)  # noqa: E731
    run.stage = str(get("stage", "name") or "?")
    run.dataset = str(get("dataset", "name") or "?")
    run.rsp = get("rsp", "enabled")
    run.head = str(get("head", "name") or "?")
    run.tags = [str(t) for t in (get("logger", "tags") or [])]
    run.pretrain = bool(get("train", "init_ckpt")) or ("pretrain-mapillary" in run.tags and run.dataset != "mapillary")


def _dig(d: Any, keys: Iterable[str]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def read_run(path: Path) -> Run:
    """Read one run folder (rspnet output dir or W&B offline run dir)."""
    run = Run(path)
    wandb_dirs = sorted(path.glob("wandb/offline-run-*")) + sorted(path.glob("wandb/run-*"))
    if path.name.startswith(("offline-run-", "run-")):
        wandb_dirs = [path]
    if (path / "config.yaml").is_file():
        _describe(run, OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False))
    elif wandb_dirs:
        _describe(run, _wandb(wandb_dirs[-1])["config"])
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
    for wdir in reversed(wandb_dirs):
        wrun = _wandb(wdir)
        sources.append((f"wandb/{wdir.name}", None if held_out else _wandb_best(wrun)))
        run.params = run.params or wrun["summary"].get("params")
    for name, value in sources:
        if isinstance(value, (int, float)):
            run.miou, run.source = float(value), name
            break
    return run


SKIP = {".hydra", "checkpoints", "csv", "files", "logs", ".submitit"}


def find_runs(roots: Iterable[Path]) -> list[Run]:
    """Every run under the given folders; a pipeline's per-stage subfolders are not separate runs."""
    runs: list[Run] = []

    def walk(d: Path) -> None:
        has_config = (d / "config.yaml").is_file()
        if has_config or d.name.startswith("offline-run-"):
            runs.append(read_run(d))
            if not has_config or (d / "pipeline.json").is_file():
                return
        for child in sorted(c for c in d.iterdir() if c.is_dir() and c.name not in SKIP):
            if not (has_config and child.name == "wandb"):  # a run's own W&B dir was read with it
                walk(child)

    for root in roots:
        walk(Path(root))
    return runs


def _matches(row: PaperRow, run: Run) -> bool:
    return (run.stage in FINAL_STAGES and run.dataset == "cityscapes" and run.rsp is row.rsp
            and run.head == row.head and run.pretrain == row.pretrain and run.miou is not None)


def _pct(value: float | None) -> str:
    return "not run here" if value is None else f"{100 * value:.1f}"


def _m(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value / 1e6:.2f}" if value > 1000 else f"{value:.2f}"


def render(runs: list[Run]) -> str:
    """The README results table (paper rows, then our other runs) as markdown."""
    lines = ["| Paper | Row | Paper mIoU (%) | Paper params (M) | Command | Our mIoU (%) | Our params (M) | Runs |",
             "|---|---|---|---|---|---|---|---|"]
    used: set[Path] = set()
    for row in PAPER_ROWS:
        hits = [r for r in runs if _matches(row, r)]
        best = max(hits, key=lambda r: r.miou or 0.0) if hits else None
        used.update(r.path for r in hits)
        lines.append(f"| {row.table} | {row.row} | {row.miou:.1f} | {_m(row.params)} | `{row.command}` | "
                     f"{_pct(best.miou if best else None)} | {_m(best.params) if best else '–'} | {len(hits)} |")
    others = [r for r in runs if r.path not in used and r.miou is not None]
    if others:
        lines += ["", "Other local runs (not paper rows):", "",
                  "| Run | Stage | Dataset | RSP | Head | Pretrained | mIoU (%) | Params (M) | From |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(others, key=lambda r: str(r.path)):
            rsp = "?" if r.rsp is None else ("on" if r.rsp else "off")
            lines.append(f"| `{r.path}` | {r.stage} | {r.dataset} | {rsp} | {r.head} | {'yes' if r.pretrain else 'no'} | "
                         f"{_pct(r.miou)} | {_m(r.params)} | {r.source} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: print the table for the given run folders to stdout."""
    parser = argparse.ArgumentParser(prog="python -m experiments.collect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="run / sweep / W&B offline folders")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.run_dirs if not p.is_dir()]
    if missing:
        print(f"collect: error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    sys.stdout.write(render(find_runs(args.run_dirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
