"""stage=pipeline: cell search -> macro search -> train -> eval, one subfolder per stage."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from rspnet.stages import get_stage
from rspnet.utils.config import flush_config, output_dir, save_config_on_first_write
from rspnet.utils.io import atomic_write_json
from rspnet.utils.loggers import finish_loggers

log = logging.getLogger(__name__)


def _stage_cfg(cfg: DictConfig, name: str, out: Path, epochs: int | None, **top: Any) -> DictConfig:
    """A copy of `cfg` for one sub-stage: its own output dir, epoch budget and inputs."""
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.stage.name = name
        sub.paths.output_dir = str(out / name)
        if epochs is not None:
            sub.trainer.max_epochs = int(epochs)
        for key, value in top.items():
            sub[key] = value
    return sub


def _run(cfg: DictConfig, name: str) -> dict:
    """Run one sub-stage, saving its config next to its outputs."""
    out = output_dir(cfg)
    save_config_on_first_write(cfg, out)
    t0 = time.perf_counter()
    ok = False
    try:
        result = get_stage(name)(cfg) or {}
        ok = True
    finally:
        flush_config(out, write=ok)
        finish_loggers()  # each stage is its own W&B run
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run_pipeline(cfg: DictConfig) -> dict:
    """Run the four stages in order; print and save a summary (`pipeline.json`)."""
    out = output_dir(cfg)
    p = cfg.stage
    results: dict[str, dict] = {}

    cell_cfg = _stage_cfg(cfg, "cell_search", out, p.get("cell_search_epochs"))
    results["cell_search"] = _run(cell_cfg, "cell_search")
    genotype = str(out / "cell_search" / "genotype.json")

    macro_cfg = _stage_cfg(cfg, "macro_search", out, p.get("macro_search_epochs"), genotype=genotype)
    results["macro_search"] = _run(macro_cfg, "macro_search")
    macro = str(out / "macro_search" / "macro.json")

    train_cfg = _stage_cfg(cfg, "train", out, p.get("train_epochs"), genotype=genotype, macro_arch=macro)
    results["train"] = _run(train_cfg, "train")
    ckpt = results["train"].get("best_ckpt") or str(out / "train" / "checkpoints" / "last.ckpt")

    eval_cfg = _stage_cfg(cfg, "eval", out, None, ckpt=ckpt)
    results["eval"] = _run(eval_cfg, "eval")

    summary = {
        "miou": results["eval"].get("miou"),
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
        "objective": results["eval"].get("miou"),
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
    if summary["params"] is not None:
        table.add_row("params", f"{summary['params'] / 1e6:.3f} M")
    for stage, secs in summary["seconds"].items():
        table.add_row(f"time {stage}", f"{secs} s")
    for name, path in summary["artifacts"].items():
        table.add_row(name, path)
    Console().print(table)
