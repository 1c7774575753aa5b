"""stage=train: fixed-architecture training of the `net` group's network with the SegModule recipe.

net=rspnet (default): the derived network of genotype.json (+ macro.json); net=enet, net=monai_unet:
a hand-designed or library baseline, no artifacts, same data, schedule, weighting and selection.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from rspnet.architecture import REQUIRED, artifact_arg, cfg_provenance, load_architecture
from rspnet.data import build_datamodule
from rspnet.data.stats import resolve_class_weights
from rspnet.errors import ArtifactError, ConfigError
from rspnet.lit.seg_module import SELECT_MIOU, build_seg_module
from rspnet.models.nets import is_searched, net_spec
from rspnet.utils.checkpoint import (
    AtomicCheckpointIO,
    class_layers,
    load_net_weights,
    net_state,
    read_checkpoint,
)
from rspnet.utils.lifecycle import best_checkpoint, last_checkpoints, resolve_ckpt_path
from rspnet.utils.loggers import all_loggers, build_logger, log_file_artifact
from rspnet.utils.results import WriteResult
from rspnet.utils.runtime import output_dir, require
from rspnet.utils.trainer import build_trainer, run_callbacks

log = logging.getLogger(__name__)


def training_architecture(cfg: DictConfig) -> tuple[Any, Any]:
    """`load_architecture` with `genotype=` required; warnings for default_macro and an unsearched architecture."""
    # training has no default cell: the genotype must be given; the macro default is shared
    require(
        cfg,
        "genotype",
        "pass genotype=PATH (genotype.json from stage=cell_search, "
        "or genotype=paper_like for the shipped, unsearched preset)",
    )
    architecture = load_architecture(cfg)
    if not artifact_arg(cfg, "macro_arch"):
        log.warning(
            "training on default_macro, the hand-made HRNet-style trellis (provenance: preset, not a "
            "searched macro.json); pass macro_arch=DIR/macro.json for a searched one"
        )
    provenance = cfg_provenance(cfg)
    if set(provenance.values()) != {"searched"}:
        log.warning(
            "architecture is not a search result (genotype: %s, macro: %s); results are reported as such",
            provenance["genotype"],
            provenance["macro"],
        )
    return architecture


def unused_architecture(cfg: DictConfig, spec: dict[str, Any]) -> tuple[None, None]:
    """A family built from its `net` entry alone takes no genotype/macro; given ones are ignored, with a warning."""
    given = [key for key in ("genotype", "macro_arch") if cfg.get(key) and not str(cfg[key]).startswith(REQUIRED)]
    if given:
        log.warning("net=%s is not built from a genotype or macro: ignoring %s", spec["name"], ", ".join(given))
    return None, None


INIT_SKIP = "classifiers"  # train.init_skip: the one choice (null = strict)


def init_from_checkpoint(module: Any, path: str | None, skip: str | None = None) -> None:
    """`train.init_ckpt`: copy the network weights of another training checkpoint (strict keys and shapes).

    `skip="classifiers"` (`train.init_skip`) keeps this network's freshly initialised class-shaped
    layers (the heads' `class_layers`: final classifier, OCR aux classifier) and copies the rest
    strictly: fine-tuning across label sets. Without it a different class count is one error naming the option.
    """
    if not path:
        raise ConfigError(f"train.init_skip={skip} needs train.init_ckpt=PATH (the weights to copy)")
    source = f"train.init_ckpt={path}"
    state = net_state(read_checkpoint(path))
    if not state:
        raise ArtifactError(f"{source}: no 'net.*' weights in it; pass a checkpoint written by stage=train")
    layers = class_layers(module.net)
    stored = state.get(f"{layers[0]}.weight") if layers else None
    theirs, ours = (int(stored.shape[0]) if stored is not None else None), int(module.num_classes)
    if skip is None:
        if theirs is not None and theirs != ours:
            raise ArtifactError(
                f"{source} predicts {theirs} classes but this dataset has {ours}; pass "
                f"train.init_skip={INIT_SKIP} to copy everything else and re-initialise the class-shaped "
                f"layers ({', '.join(layers)})"
            )
        load_net_weights(module.net, state, source)
        log.info("initialised the network from %s", path)
        return
    load_net_weights(module.net, state, source, skip=tuple(layers))
    log.info(
        "initialised the network from %s except the class-shaped layers %s, re-initialised (train.init_skip=%s: "
        "%s -> %s classes)",
        path,
        ", ".join(layers),
        skip,
        theirs,
        ours,
    )


def check_selection_validates(cfg: DictConfig, select: str) -> None:
    """A selecting run (train.select=holdout|val) must validate: with validation off the best checkpoint is never
    chosen, the run reports its last one as if selected, and the held-out slice only goes missing from training."""
    limit = cfg.trainer.get("limit_val_batches")
    if select != "last" and limit is not None and float(limit) == 0:
        raise ConfigError(
            f"train.select={select} picks the checkpoint by validation, but trainer.limit_val_batches=0 turns "
            "validation off; set train.select=last (the last checkpoint, no selection; train.holdout_fraction=0 "
            "trains on every frame) or let validation run"
        )


def selection_info(dm: Any) -> dict[str, Any]:
    """What picks the checkpoint (train.json, checkpoint metadata and metrics.json carry it)."""
    hold = dm.holdout_state()  # the slice in use: a resumed run keeps its checkpoint's
    sel = dm.selection if hold is None else dm.selection.with_slice(hold)
    slice_ = None if hold is None else {"fraction": sel.fraction, "seed": sel.seed, "images": len(hold["holdout"])}
    if sel.sequences and slice_ is not None:
        slice_["sequences"] = list(sel.sequences)
    return {
        "select": sel.select,
        "split": sel.split,
        "holdout": slice_,
        "selected_on": sel.describe(None if hold is None else len(hold["holdout"])),
    }


def restore_holdout(dm: Any, ckpt_path: str | None) -> None:
    """On resume, take the held-out slice from the checkpoint before anything is computed from it."""
    if ckpt_path is None:
        return
    state = read_checkpoint(ckpt_path).get(type(dm).__qualname__)  # where Lightning saves dm.state_dict()
    if isinstance(state, dict):
        dm.load_state_dict(state)


def train_result(static: dict[str, Any], trainer: pl.Trainer, module: Any) -> dict[str, Any]:
    """train.json (written by WriteResult on rank 0, where the fit ran): checkpoints, selection score, counters."""
    best_cb = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None) == SELECT_MIOU), None)
    last_cb = next(c for c in trainer.checkpoint_callbacks if getattr(c, "filename", None) == "last")
    out = Path(str(last_cb.dirpath)).parent
    best_score = best_cb.best_model_score if best_cb is not None else None
    last_miou = trainer.callback_metrics.get(SELECT_MIOU)
    best = float(best_score) if best_score is not None else (float(last_miou) if last_miou is not None else None)
    last = Path(last_cb.best_model_path or out / "checkpoints" / "last.ckpt")
    best_path = (best_cb.best_model_path or None) if best_cb is not None else None
    return {
        "best_ckpt": best_path,
        "last_ckpt": str(last) if last.is_file() else None,
        # the checkpoint to report (pipeline evaluates it): best on the selection split, or last
        "selected_ckpt": best_path or (str(last) if last.is_file() else None),
        "selection": static["selection"],
        # mIoU on the selection split (`selection.split`; the held-out slice of train by default):
        # best for train.select=holdout|val, last validation for train.select=last (null: no validation)
        "best_val_miou": best,
        "class_weights": static["class_weights"],
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        # the network family (`name`, `class`; `config` = its conf/net entry unless net=rspnet) and its inputs
        **{
            k: static[k]
            for k in ("net", "params", "arch_provenance", "genotype", "macro_arch", "init_ckpt", "init_skip")
        },
    }


def static_result(cfg: DictConfig, module: Any, selection: dict, weights: list | None, searched: bool) -> dict:
    """The train.json entries known before the fit: network, inputs, selection, class weights."""
    return {
        "net": module.meta["net"],
        "selection": selection,
        "class_weights": {
            "source": str(cfg.train.get("class_weights")),
            "scheme": str(cfg.train.get("class_weighting")),
            "weights": weights,
        }
        if weights is not None
        else None,
        "params": module.meta["params"],
        "arch_provenance": module.meta["arch_provenance"],
        "genotype": artifact_arg(cfg, "genotype") if searched else None,
        "macro_arch": str(cfg.macro_arch) if cfg.get("macro_arch") and searched else None,
        "init_ckpt": str(cfg.train.init_ckpt) if cfg.train.get("init_ckpt") else None,
        "init_skip": cfg.train.get("init_skip"),
    }


def run(cfg: DictConfig) -> dict:
    """Train, keep best/last checkpoints, write DIR/train.json; objective = best selection-split mIoU."""
    out = output_dir(cfg)
    spec = net_spec(cfg)
    genotype, macro = training_architecture(cfg) if is_searched(spec) else unused_architecture(cfg, spec)
    dm = build_datamodule(cfg)
    dm.monitor_val = bool(cfg.train.get("monitor_val", True))
    check_selection_validates(cfg, dm.selection.select)
    # the checkpoint group is checked before anything is written
    best = [best_checkpoint(cfg, out, SELECT_MIOU)] if dm.selection.select != "last" else []
    dm.setup("fit")
    ckpt_path = resolve_ckpt_path(cfg, out)
    restore_holdout(dm, ckpt_path)
    selection = selection_info(dm)
    weights = resolve_class_weights(cfg, dm, out)
    module = build_seg_module(
        cfg, genotype, macro, dm.num_classes, list(dm.classes), list(dm.palette), weights, selection
    )
    log.info("checkpoint selection: %s", selection["selected_on"])
    params = module.meta["params"]
    shape = f"head={cfg.head.name}, rsp={cfg.rsp.enabled}" if is_searched(spec) else type(module.net).__name__
    log.info("network net=%s: %s params (%.3f M), %s", spec["name"], params, params / 1e6, shape)
    if cfg.train.get("init_ckpt") or cfg.train.get("init_skip"):
        init_from_checkpoint(module, cfg.train.get("init_ckpt"), cfg.train.get("init_skip"))
    no_val = {"limit_val_batches": 0} if dm.selection.split is None else {}
    logger = build_logger(cfg, out)
    for lg in all_loggers(logger):  # W&B config / CSV hparams: which family, searched?
        provenance = cfg_provenance(cfg) if is_searched(spec) else module.meta["arch_provenance"]
        lg.log_hyperparams({"net": spec["name"], "arch_provenance": provenance})
    static = static_result(cfg, module, selection, weights, genotype is not None)
    writer = WriteResult(out / "train.json", functools.partial(train_result, static))
    callbacks = [*best, *last_checkpoints(cfg, out)]
    trainer = build_trainer(
        cfg,
        out,
        logger,
        [*callbacks, writer, *run_callbacks(cfg, out, logger)],
        plugins=[AtomicCheckpointIO()],
        **no_val,
    )
    (out / "train.json").unlink(missing_ok=True)  # never return a previous run's result
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    result = writer.read("training result")
    if result["selected_ckpt"]:  # the checkpoint eval reports, as the W&B `model` artifact eval uses
        log_file_artifact(logger, Path(result["selected_ckpt"]), "model")
    return result | {"objective": result["best_val_miou"]}
