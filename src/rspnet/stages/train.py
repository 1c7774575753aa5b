"""stage=train: fixed-architecture training of the derived network from genotype.json (+ macro.json)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rspnet.errors import ArtifactError
from rspnet.utils.config import output_dir, require
from rspnet.utils.io import atomic_write_json

log = logging.getLogger(__name__)


def load_architecture(cfg: DictConfig) -> tuple[Any, Any]:
    """(Genotype, MacroArch) from `genotype=` (required) and `macro_arch=` (default: default_macro, with a warning)."""
    from rspnet.stages.summary import arch_provenance, artifact_arg
    from rspnet.stages.summary import load_architecture as load_with_defaults

    # training has no default cell: the genotype must be given; the macro default is shared
    require(cfg, "genotype", "pass genotype=PATH (genotype.json from stage=cell_search, "
                             "or genotype=paper_like for the shipped, unsearched preset)")
    architecture = load_with_defaults(cfg)
    if not artifact_arg(cfg, "macro_arch"):
        log.warning("training on default_macro, the hand-made HRNet-style trellis (provenance: preset, not a "
                    "searched macro.json); pass macro_arch=DIR/macro.json for a searched one")
    provenance = arch_provenance(cfg)
    if set(provenance.values()) != {"searched"}:
        log.warning("architecture is not a search result (genotype: %s, macro: %s); results are reported as such",
                    provenance["genotype"], provenance["macro"])
    return architecture


def init_from_checkpoint(module: Any, path: str) -> None:
    """`train.init_ckpt`: copy the network weights of another training checkpoint (strict keys and shapes)."""
    from rspnet.lit.seg_module import load_net_weights, net_state, read_checkpoint

    state = net_state(read_checkpoint(path))
    if not state:
        raise ArtifactError(f"train.init_ckpt={path}: no 'net.*' weights in it; pass a checkpoint written by stage=train")
    load_net_weights(module.net, state, f"train.init_ckpt={path}")
    log.info("initialised the network from %s", path)


def _checkpoint_callbacks(out: Path) -> tuple[Any, Any]:
    """(best, last): best (max val/miou) and last checkpoints in DIR/checkpoints (written by AtomicCheckpointIO).

    Lightning 2.6 writes `save_last`'s last.ckpt only in a step where the monitored top-k file
    was saved too, so it would stay at the best epoch once val/miou stops improving (and
    `ckpt_path=last` would resume from there); an unmonitored top-1 callback named "last"
    rewrites last.ckpt every epoch instead.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    common = {"dirpath": str(out / "checkpoints"), "save_top_k": 1, "auto_insert_metric_name": False,
              "enable_version_counter": False}  # a moved run dir must overwrite last.ckpt, not add last-v1
    return (ModelCheckpoint(filename="best-epoch{epoch:03d}", monitor="val/miou", mode="max", **common),
            ModelCheckpoint(filename="last", **common))


def run_train(cfg: DictConfig) -> dict:
    """Train, keep best/last checkpoints, write DIR/train.json; objective = best val mIoU."""
    from rspnet.data import build_datamodule
    from rspnet.lit.seg_module import SegModule
    from rspnet.stages.summary import arch_provenance, artifact_arg
    from rspnet.utils.checkpoint import AtomicCheckpointIO
    from rspnet.utils.loggers import build_logger
    from rspnet.utils.trainer import build_trainer, resolve_ckpt_path

    out = output_dir(cfg)
    genotype, macro = load_architecture(cfg)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    module = SegModule(cfg, genotype.to_dict(), macro.to_dict(), dm.num_classes, list(dm.classes), list(dm.palette))
    params = module.meta["params"]
    log.info("derived network: %s params (%.3f M), head=%s, rsp=%s", params, params / 1e6, cfg.head.name, cfg.rsp.enabled)
    if cfg.train.get("init_ckpt"):
        init_from_checkpoint(module, str(cfg.train.init_ckpt))
    ckpt_cb, last_cb = _checkpoint_callbacks(out)
    logger = build_logger(cfg, out)
    if logger:  # W&B config / CSV hparams say whether the architecture was searched
        logger.log_hyperparams({"arch_provenance": arch_provenance(cfg)})
    trainer = build_trainer(cfg, out, logger, [ckpt_cb, last_cb], plugins=[AtomicCheckpointIO()])
    trainer.fit(module, datamodule=dm, ckpt_path=resolve_ckpt_path(cfg, out))

    best_score = ckpt_cb.best_model_score
    last_miou = trainer.callback_metrics.get("val/miou")
    best = float(best_score) if best_score is not None else (float(last_miou) if last_miou is not None else None)
    last = Path(last_cb.best_model_path or out / "checkpoints" / "last.ckpt")
    epochs, step = int(trainer.current_epoch), int(trainer.global_step)
    if step == 0 and last.is_file():  # strategy=ddp_spawn trained in child processes: read the counters back
        from rspnet.lit.seg_module import read_checkpoint

        ck = read_checkpoint(last)
        epochs, step = int(ck["epoch"]) + 1, int(ck["global_step"])
    result = {
        "best_ckpt": ckpt_cb.best_model_path or None,
        "last_ckpt": str(last) if last.is_file() else None,
        "best_val_miou": best,
        "epochs": epochs,
        "global_step": step,
        "params": params,
        "arch_provenance": module.meta["arch_provenance"],
        "genotype": artifact_arg(cfg, "genotype"),
        "macro_arch": str(cfg.macro_arch) if cfg.get("macro_arch") else None,
        "init_ckpt": str(cfg.train.init_ckpt) if cfg.train.get("init_ckpt") else None,
    }
    if trainer.is_global_zero:
        atomic_write_json(out / "train.json", result)
    return result | {"objective": best}
