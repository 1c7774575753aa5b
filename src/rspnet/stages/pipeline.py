"""stage=pipeline: cell search -> macro search -> train -> eval, one subfolder per stage.

A network with no architecture to search (`net=enet`, `net=monai_unet`: a `net` entry without `searched`)
skips the two searches: its pipeline is train -> eval with the same recipe, so one sweep can alternate
`net=rspnet,enet` and compare the nets' training stages (and each side's total wall time)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from rspnet.architecture import arch_provenance, search_epochs
from rspnet.errors import ConfigError
from rspnet.models.nets import is_searched, net_spec
from rspnet.stages import run_stage
from rspnet.utils.io import atomic_write_json, before_first_write, read_json, take_pending
from rspnet.utils.run_record import DONE
from rspnet.utils.runtime import output_dir

log = logging.getLogger(__name__)


STAGES = ("cell_search", "macro_search", "train", "eval")


def searched_artifacts(out: Path) -> tuple[Path, Path]:
    """Where a pipeline folder's searches write the genotype and the macro architecture that train builds."""
    return out / "cell_search" / "genotype.json", out / "macro_search" / "macro.json"


def _stage_cfg(cfg: DictConfig, name: str, out: Path, resume: bool = False, **top: Any) -> DictConfig:
    """A copy of `cfg` for one sub-stage: its own output dir, budgets (`stage.<name>_*`), inputs and resume point."""
    p = cfg.stage
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.stage.name = name
        sub.paths.output_dir = str(out / name)
        sub.print_config = False  # the pipeline printed the whole config once
        # per-sub-stage settings; null (or absent) keeps the shared trainer/dataset/search value
        for key, target in (
            ("epochs", "trainer.max_epochs"),
            ("batch_size", "dataset.batch_size"),
            ("warmup_epochs", "search.warmup_epochs"),
        ):
            value = p.get(f"{name}_{key}")
            if value is not None:
                OmegaConf.update(sub, target, int(value), merge=False)
        for key, value in top.items():
            sub[key] = value
        # resuming: a finished sub-stage is skipped (its done.json), one killed after a checkpoint goes
        # on from it, one killed before restarts (rspnet.utils.run_record)
        sub.ckpt_path = "last" if resume else None
    return sub


def _resuming(cfg: DictConfig) -> bool:
    """`ckpt_path=last` resumes a killed pipeline; any other ckpt_path is refused."""
    value = cfg.get("ckpt_path")
    if value in (None, "", False):
        return False
    if str(value) != "last":
        raise ConfigError(
            f"ckpt_path={value}: stage=pipeline resumes with ckpt_path=last only "
            "(finished stages are skipped, a killed one goes on from its last.ckpt)"
        )
    return True


def _run(cfg: DictConfig, name: str) -> dict:
    """Run one sub-stage through `run_stage` (which skips it when resuming and it finished); add its wall time.

    Each stage starts from the seed, as when run alone: a resumed pipeline that skips the
    finished stages then draws the same initialisation and batches as an uninterrupted one.
    """
    result = run_stage(cfg)
    marker = read_json(output_dir(cfg) / DONE, "done marker")
    return result | {"seconds": round(float(marker["wall_s"]), 1)}


def _forget_done(out: Path) -> None:
    """Remove the done markers of an earlier pipeline run in `out`."""
    for name in STAGES:
        (out / name / DONE).unlink(missing_ok=True)


def run(cfg: DictConfig) -> dict:
    """Run the four stages in order; print and save a summary (`pipeline.json`).

    `ckpt_path=last` resumes a killed pipeline: stages with a done marker are skipped, the
    killed stage goes on from its `last.ckpt` (or restarts if it had none), later ones run.
    """
    out = output_dir(cfg)
    resume = _resuming(cfg)
    if not resume:  # a fresh run: older done markers must not count, once this run writes anything
        before_first_write(out, lambda: _forget_done(out), name="done")
    results: dict[str, dict] = {}

    def stage(name: str, **top: Any) -> dict:
        return _run(_stage_cfg(cfg, name, out, resume=resume, **top), name)

    spec = net_spec(cfg)
    searched = is_searched(spec)
    genotype, macro = (str(path) for path in searched_artifacts(out)) if searched else (None, None)
    try:
        if searched:
            results["cell_search"] = stage("cell_search")
            results["macro_search"] = stage("macro_search", genotype=genotype)
            results["train"] = stage("train", genotype=genotype, macro_arch=macro)
        else:
            log.info("net=%s has no architecture to search: the pipeline trains and evaluates it", spec.get("name"))
            results["train"] = stage("train")
        # the checkpoint train.select picked (best on the held-out slice by default, or last)
        ckpt = (
            results["train"].get("selected_ckpt")
            or results["train"].get("best_ckpt")
            or str(out / "train" / "checkpoints" / "last.ckpt")
        )
        results["eval"] = stage("eval", ckpt=ckpt)
    finally:
        take_pending(out, name="done")  # a run that wrote nothing leaves the markers alone

    summary = _summary(cfg, out, results, {"genotype": genotype, "macro": macro, "checkpoint": ckpt}, spec)
    atomic_write_json(out / "pipeline.json", summary)
    _print_summary(summary, cfg)
    return summary


def _summary(
    cfg: DictConfig, out: Path, results: dict[str, dict], files: dict[str, str | None], spec: dict[str, Any]
) -> dict:
    """pipeline.json: the reported mIoU, what picked the checkpoint, artifacts, time, epochs and provenance
    (a net without a search: no genotype/macro artifacts, its `net` name instead)."""
    genotype, macro, ckpt = files["genotype"], files["macro"], files["checkpoint"]
    artifacts = (
        {
            "genotype": genotype,
            "cell_picture": str(out / "cell_search" / "cell.png"),
            "macro": macro,
            "trellis_picture": str(out / "macro_search" / "trellis.png"),
        }
        if genotype
        else {}
    )
    summary = {
        "net": spec.get("name"),
        "miou": results["eval"].get("miou"),
        "split": str(cfg.split),  # the reported split (eval); selection_* below picked the checkpoint
        "selected_on": (results["train"].get("selection") or {}).get("selected_on"),
        "selection_miou": results["train"].get("best_val_miou"),
        "params": results["train"].get("params"),
        "artifacts": artifacts
        | {
            "checkpoint": ckpt,
            "metrics": str(out / "eval" / "metrics.json"),
        },
        "seconds": {k: v.get("seconds") for k, v in results.items()},
        # budgets as run (epochs done per stage, the paper needs 300 / 40 / a full schedule)
        "epochs": {
            "cell_search": search_epochs(genotype),
            "macro_search": search_epochs(macro),
            "train": results["train"].get("epochs"),
        },
        "batch_size": {k: int(_stage_cfg(cfg, k, out, False).dataset.batch_size) for k in results if k != "eval"},
        "arch_provenance": arch_provenance(genotype, macro) if genotype else {"genotype": None, "macro": None},
        # what a sweep optimises: the selection-split score, never the reported split's
        # (train.select=val makes them the same split; train.select=last with no slice gives null)
        "objective": results["train"].get("objective"),
    }
    return summary


def _print_summary(summary: dict, cfg: DictConfig) -> None:
    """Final table: mIoU, params, time per stage, where the artifacts and pictures are."""
    table = Table(
        title=f"rspnet pipeline — {cfg.dataset.name}, model={cfg.model.name}, rsp={'on' if cfg.rsp.enabled else 'off'}"
    )
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
    if summary["artifacts"].get("genotype"):
        table.add_row("architecture", f"genotype {prov['genotype']}, macro {prov['macro']}")
    else:
        table.add_row("architecture", f"net={summary.get('net')} (no search)")
    for name, path in summary["artifacts"].items():
        table.add_row(name, path)
    Console().print(table)
