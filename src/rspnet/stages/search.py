"""Stage 1 (`stage=cell_search`) and `fit_search`, the fit loop shared by both search stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rspnet.utils.checkpoint import AtomicCheckpointIO
from rspnet.utils.config import output_dir


def search_callbacks(out: Path) -> list:
    """Checkpoint after every epoch (after the module's epoch-end export); last.ckpt links to it."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return [
        ModelCheckpoint(
            dirpath=str(out / "checkpoints"),
            filename="epoch{epoch:03d}",
            auto_insert_metric_name=False,
            # Lightning only writes last.ckpt when it saved a regular checkpoint in the same step;
            # top-1 without a monitor keeps just the newest epoch file, last.ckpt is a link to it
            save_last="link",
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
        )
    ]


def fit_search(cfg: DictConfig, module: Any, datamodule: Any) -> dict:
    """Fit a SearchModule on {weight, arch} halves of the training images; validates on the selection split.

    The selection split (`train.select`, rspnet.data.selection) is the held-out slice of train by
    default, so the `val/*` numbers (a search sweep's objective) never see the reported split.
    """
    from pytorch_lightning.utilities import CombinedLoader

    from rspnet.lit.search_module import check_trainer
    from rspnet.utils.distributed import rank_errors
    from rspnet.utils.loggers import build_logger
    from rspnet.utils.trainer import build_trainer, resolve_ckpt_path

    out = output_dir(cfg)
    ckpt_path = resolve_ckpt_path(cfg, out)
    trainer = build_trainer(cfg, out, build_logger(cfg, out), search_callbacks(out), plugins=[AtomicCheckpointIO()])
    check_trainer(cfg.search, trainer)  # here too: inside spawned DDP ranks the error would not be one line
    datamodule.setup("fit")
    weight_loader, arch_loader = datamodule.search_dataloaders()
    module.data_split = datamodule.split_state()
    train_loader = CombinedLoader({"weight": weight_loader, "arch": arch_loader}, mode=str(cfg.search.combine_mode))
    with rank_errors():  # an error in a spawned DDP rank stays one line
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=datamodule.search_val_dataloader(),
                    ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    result: dict[str, Any] = {"output_dir": str(out), "epochs": int(module.epochs_done), **metrics}
    if "val/miou" in metrics:
        result["objective"] = metrics["val/miou"]  # what hparams_search optimises
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        result["checkpoint"] = str(last)
    return result


def run_cell_search(cfg: DictConfig) -> dict:
    """Stage 1: DARTS search of the Norm-Cell on the fixed trellis -> DIR/genotype.json, DIR/cell.png."""
    from rspnet.data import build_datamodule
    from rspnet.lit.search_module import SearchModule
    from rspnet.models.supernet import CellSupernet

    out = output_dir(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    net = CellSupernet.from_cfg(cfg, datamodule.num_classes)
    result = fit_search(cfg, SearchModule(net, cfg), datamodule)
    genotype = out / "genotype.json"
    entropy = net.alpha_entropy()
    result.update(genotype=str(genotype), cell_picture=str(out / "cell.png"), alpha_entropy=entropy["mean"])
    # normalised entropy 1.0 = softmax(alpha) still uniform: the argmax is noise, not a decision
    print(f"cell search: genotype {net.genotype().ops} -> {genotype} "
          f"(alpha entropy / log 5: per edge {entropy['per_edge']}, mean {entropy['mean']:.3f})")
    return result
