"""stage=pipeline: cell search -> macro search -> train -> eval, one subfolder per stage."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from rspnet.provenance import of_file, search_epochs
from rspnet.stages import get_stage
from rspnet.utils.config import output_dir, save_config
from rspnet.utils.io import atomic_write_json
from rspnet.utils.loggers import finish_loggers
from rspnet.utils.threads import apply as apply_thread_policy

log = logging.getLogger(__name__)


def _stage_cfg(cfg: DictConfig, name: str, out: Path, **top: Any) -> DictConfig:
    """A copy of `cfg` for one sub-stage: its own output dir, budgets (`stage.<name>_*`) and inputs."""
    p = cfg.stage
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.stage.name = name
        sub.paths.output_dir = str(out / name)
        # per-sub-stage settings; null (or absent) keeps the shared trainer/dataset/search value
        for key, target in (("epochs", "trainer.max_epochs"), ("batch_size", "dataset.batch_size"),
                            ("warmup_epochs", "search.warmup_epochs")):
            value = p.get(f"{name}_{key}")
            if value is not None:
                OmegaConf.update(sub, target, int(value), merge=False)
        for key, value in top.items():
            sub[key] = value
    return sub


def _run(cfg: DictConfig, name: str) -> dict:
    """Run one sub-stage, saving its config next to its outputs."""
    out = output_dir(cfg)
    save_config(cfg, out)
    apply_thread_policy(cfg)  # logs the pools this stage runs with
    t0 = time.perf_counter()
    try:
        result = get_stage(name)(cfg) or {}
    finally:
        finish_loggers()  # each stage is its own W&B run
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run_pipeline(cfg: DictConfig) -> dict:
    """Run the four stages in order; print and save a summary (`pipeline.json`)."""
    out = output_dir(cfg)
    results: dict[str, dict] = {}

    cell_cfg = _stage_cfg(cfg, "cell_search", out)
    results["cell_search"] = _run(cell_cfg, "cell_search")
    genotype = str(out / "cell_search" / "genotype.json")

    macro_cfg = _stage_cfg(cfg, "macro_search", out, genotype=genotype)
    results["macro_search"] = _run(macro_cfg, "macro_search")
    macro = str(out / "macro_search" / "macro.json")

    train_cfg = _stage_cfg(cfg, "train", out, genotype=genotype, macro_arch=macro)
    results["train"] = _run(train_cfg, "train")
    # the checkpoint train.select picked (best on the held-out slice by default, or last)
    ckpt = (results["train"].get("selected_ckpt") or results["train"].get("best_ckpt")
            or str(out / "train" / "checkpoints" / "last.ckpt"))

    eval_cfg = _stage_cfg(cfg, "eval", out, ckpt=ckpt)
    results["eval"] = _run(eval_cfg, "eval")

    summary = {
        "miou": results["eval"].get("miou"),
        "split": str(cfg.split),  # the reported split (eval); selection_* below picked the checkpoint
        "selected_on": (results["train"].get("selection") or {}).get("selected_on"),
        "selection_miou": results["train"].get("best_val_miou"),
        "params": results["train"].get("params"),
        "artifacts": {
            "genotype": genotype,
            "cell_picture": str(out / "cell_search" / "cell.png"),
            "macro": macro,
            "trellis_picture": str(out / "macro_search" / "trellis.png"),
            "checkpoint": ckpt,
            "metrics": str(out / "eval" / "metrics.json"),
        },
        "seconds": {k: v.get("seconds") for k, v in results.items()},
        # budgets as run (epochs done per stage, the paper needs 300 / 40 / a full schedule)
        "epochs": {"cell_search": search_epochs(genotype), "macro_search": search_epochs(macro),
                   "train": results["train"].get("epochs")},
        "batch_size": {k: int(c.dataset.batch_size) for k, c in (("cell_search", cell_cfg),
                       ("macro_search", macro_cfg), ("train", train_cfg))},
        "arch_provenance": {"genotype": of_file(genotype), "macro": of_file(macro)},
        # what a sweep optimises: the selection-split score, never the reported split's
        # (train.select=val makes them the same split; train.select=last with no slice gives null)
        "objective": results["train"].get("objective"),
    }
    atomic_write_json(out / "pipeline.json", summary)
    _print_summary(summary, cfg)
    return summary


def _print_summary(summary: dict, cfg: DictConfig) -> None:
    """Final table: mIoU, params, time per stage, where the artifacts and pictures are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rspnet pipeline — {cfg.dataset.name}, model={cfg.model.name}, rsp={'on' if cfg.rsp.enabled else 'off'}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    miou = summary["miou"]
    table.add_row(f"val mIoU ({cfg.split})", f"{100 * miou:.2f} %" if miou is not None else "n/a")
    if summary.get("selected_on"):
        table.add_row("checkpoint selected on", str(summary["selected_on"]))
    if summary["params"] is not None:
        table.add_row("params", f"{summary['params'] / 1e6:.3f} M")
    for stage, secs in summary["seconds"].items():
        epochs = summary["epochs"].get(stage)
        table.add_row(f"time {stage}", f"{secs} s" + (f" ({epochs} epochs)" if epochs is not None else ""))
    prov = summary["arch_provenance"]
    table.add_row("architecture", f"genotype {prov['genotype']}, macro {prov['macro']}")
    for name, path in summary["artifacts"].items():
        table.add_row(name, path)
    Console().print(table)
