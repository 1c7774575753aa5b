"""`fit_search`: the fit loop shared by both search stages (stage=cell_search, stage=macro_search).

Builds the trainer (logger, last checkpoints, the result writer), fits a SearchModule or
MacroSearchModule on the {weight, arch} halves of the training images and returns DIR/search.json.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from rspnet.lit.search_module import check_trainer
from rspnet.utils.checkpoint import AtomicCheckpointIO
from rspnet.utils.distributed import rank_errors
from rspnet.utils.lifecycle import last_checkpoints, resolve_ckpt_path
from rspnet.utils.loggers import build_logger
from rspnet.utils.results import WriteResult
from rspnet.utils.runtime import output_dir
from rspnet.utils.trainer import build_trainer, run_callbacks

RESULT = "search.json"  # the search's result: epochs, selection-split metrics, last checkpoint


def search_result(out: Path, trainer: pl.Trainer, module: Any) -> dict[str, Any]:
    """The result of a search fit (written by WriteResult on rank 0): epochs, `select/*` metrics, last checkpoint."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("select/")}
    result: dict[str, Any] = {"output_dir": str(out), "epochs": int(module.epochs_done), **metrics}
    if "select/miou" in metrics:
        result["objective"] = metrics["select/miou"]  # what hparams_search optimises
    selection = getattr(module, "selection", None)
    if selection is not None:  # the cell search's choice (search.select) and its evidence (lit/perturb.py)
        result.update(select=selection["select"], ops=list(selection["ops"]), evidence=selection["evidence"])
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        result["checkpoint"] = str(last)
    return result


def fit_search(cfg: DictConfig, module: Any, datamodule: Any) -> dict:
    """Fit a SearchModule on {weight, arch} halves of the training images; validates on the selection split.

    The selection split (`train.select`, rspnet.data.selection) is the held-out slice of train by
    default, so the `select/*` numbers (a search sweep's objective) never see the reported split.
    The weight/arch split is saved in checkpoints by the datamodule (`state_dict`).
    """
    out = output_dir(cfg)
    ckpt_path = resolve_ckpt_path(cfg, out)
    logger = build_logger(cfg, out)
    writer = WriteResult(out / RESULT, functools.partial(search_result, out))
    trainer = build_trainer(
        cfg,
        out,
        logger,
        [*last_checkpoints(cfg, out), writer, *run_callbacks(cfg, out, logger)],
        plugins=[AtomicCheckpointIO()],
    )
    check_trainer(cfg.search, trainer)  # here too: inside spawned DDP ranks the error would not be one line
    datamodule.use_search_loaders(str(cfg.search.combine_mode))
    (out / RESULT).unlink(missing_ok=True)  # never return a previous run's result
    with rank_errors():  # an error in a spawned DDP rank stays one line (also for direct callers)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return writer.read("search result")
