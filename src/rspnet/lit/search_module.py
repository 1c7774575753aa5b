"""Generic bi-level (DARTS) search over any supernet, with manual optimisation.

The net provides `arch_parameters()`, `weight_parameters()` and `forward(x) -> logits
[B, K, H, W]`. Per training step (batch = {"weight": (x, y), "arch": (x, y)}):
(1) an architecture step on the arch batch (skipped during `search.warmup_epochs`),
first-order by default or DARTS' unrolled approximation with `search.second_order=true`;
(2) a weight step on the weight batch, gradient norm clipped to `search.grad_clip`.
The step itself is `search/bilevel.py:Architect`; this module adds logging, the DDP-aware
non-finite guard, the schedule, validation, artifacts and checkpoints. Subclasses (stage 2)
override `export_artifacts` and the validation hooks.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ConfigError, NonFiniteError
from rspnet.lit.perturb import (
    Scoring,
    ShrinkOptions,
    check_options,
    check_shrink_options,
    select_cell,
    shrink_evidence,
    shrink_record,
    shrink_step,
)
from rspnet.metrics import SegMetric
from rspnet.models.cost import CellTarget
from rspnet.models.layers import resize
from rspnet.search.bilevel import Architect, build_optimizers
from rspnet.search_space.cell import EDGES
from rspnet.search_space.evidence import null_grads, null_labels, null_mode
from rspnet.search_space.ops import PRIMITIVES
from rspnet.utils.checkpoint import check_state_dict, rng_state, set_rng_state
from rspnet.utils.distributed import all_ranks_finite, assert_same_across_ranks
from rspnet.utils.io import atomic_write_json

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
Forward = Callable[[torch.Tensor], torch.Tensor]  # the arch batch's forward (Architect.arch_step's `forward`)
# arch_snapshot() entries -> what their evolution picture shows
EVOLUTION_TITLES = {"alpha": "softmax(alpha) per cell edge", "beta": "softmax(beta) per trellis node"}
EVOLUTION_TITLES["path_scores"] = "path scores (macro.scoring) per trellis node"


def split_parameters(net: nn.Module) -> tuple[list[str], list[str]]:
    """Names of (weight, arch) parameters; asserts the two sets are disjoint and complete."""
    arch_ids = {id(p) for p in net.arch_parameters()}
    weight_ids = {id(p) for p in net.weight_parameters()}
    named = dict(net.named_parameters())
    arch = [n for n, p in named.items() if id(p) in arch_ids]
    weight = [n for n, p in named.items() if id(p) in weight_ids]
    overlap = sorted(set(arch) & set(weight))
    assert not overlap, f"parameters in both the weight and the arch optimiser: {overlap}"
    missing = sorted(set(named) - set(arch) - set(weight))
    assert not missing, f"parameters in neither optimiser: {missing}"
    assert arch, "the supernet has no architecture parameters"
    return weight, arch


# precisions whose parameters are fp32 (or fp64) and that need no loss scaler: the unrolled
# gradient then runs in fp32 with autocast off (search/unrolled.py); fp16 scaling and half
# parameters would turn its finite-difference Hessian term into rounding noise
SECOND_ORDER_PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed")


def check_trainer(search_cfg: DictConfig, trainer: Any) -> None:
    """Refuse search.second_order under DDP (no all-reduce of the unrolled gradient) and non-fp32 params/fp16."""
    if not search_cfg.second_order:
        return
    if trainer.world_size > 1:
        raise ConfigError("search.second_order=true runs on one device only; use search.second_order=false under DDP")
    if str(trainer.precision) not in SECOND_ORDER_PRECISIONS:
        raise ConfigError(
            f"search.second_order=true cannot run with trainer.precision={trainer.precision}: the unrolled "
            "gradient needs fp32 parameters and no fp16 loss scaling; use trainer.precision=32-true "
            "or bf16-mixed (the unrolled step then runs in fp32), or search.second_order=false"
        )


class SearchModule(pl.LightningModule):
    """DARTS alternation (arch step, then weight step) over `net`; logs select/miou (the selection split) each epoch."""

    def __init__(self, net: nn.Module, cfg: DictConfig) -> None:
        super().__init__()
        self.net, self.cfg, self.search_cfg = net, cfg, cfg.search
        self.automatic_optimization = False
        self.weight_names, self.arch_names = split_parameters(net)
        self.ignore_index = int(cfg.dataset.get("ignore_index", 255))
        self.num_classes = int(getattr(net, "num_classes", cfg.dataset.num_classes))
        self.val_metric = SegMetric(self.num_classes, ignore_index=self.ignore_index)
        self.out_dir = Path(str(cfg.paths.output_dir))
        self.epochs_done = 0
        # one arch_snapshot() per finished epoch (kept in checkpoints): the evolution pictures
        self.arch_history: list[dict[str, Any]] = []
        self._architect: Architect | None = None
        # search.target_params / target_latency_ms: the arch-loss penalty and the in-band selection (models/cost.py)
        self.cost_target: Any = CellTarget.from_cfg(cfg) if hasattr(net, "alpha") else None
        # {"select", "ops", "evidence"} of the finished search (lit/perturb.py), set in on_train_end
        self.selection: dict[str, Any] | None = None
        # the finished search's architecture (Genotype / MacroArch), set on every rank at the end of the fit:
        # a stage reports it without reading rank 0's file, which another rank could read half written
        self.final_arch: Any = None
        # progressive shrinking (search.shrink_every): one shrink_record per step, kept in checkpoints
        # with the supernet's op_keep mask
        self.shrink_history: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, H, W] at input resolution."""
        return self.net(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the dataset's ignore index."""
        return F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)

    def _params(self, names: list[str]) -> list[nn.Parameter]:
        named = dict(self.net.named_parameters())
        return [named[n] for n in names]

    # -- optimisers ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """[weight SGD (cosine lr), arch SGD or Adam]; param groups split by name."""
        s = self.search_cfg
        w_opt, a_opt = build_optimizers(self._params(self.weight_names), self._params(self.arch_names), s)
        epochs = self._schedule_epochs() if self._trainer is not None else 1
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=epochs, eta_min=float(s.weight_lr_min))
        return [w_opt, a_opt], [sched]

    def _schedule_epochs(self) -> int:
        """Epochs the cosine schedule spans: trainer.max_epochs, or the epochs trainer.max_steps takes."""
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return int(trainer.max_epochs)
        if trainer.max_steps is None or trainer.max_steps < 0:
            return 1  # unbounded run: nothing to anneal towards
        trainer.fit_loop.setup_data()  # the train loader's length (Lightning sets it up here or right after)
        return steps_to_epochs(int(trainer.max_steps), trainer.num_training_batches, int(self.search_cfg.warmup_epochs))

    # -- training -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        check_trainer(self.search_cfg, self.trainer)
        check_options(self.search_cfg)  # a bad selection option fails now, not after the search
        if self.shrink_options.every and not hasattr(self.net, "op_keep"):
            raise ConfigError("search.shrink_every applies to the cell search only; set search.shrink_every=0")

    @functools.cached_property
    def shrink_options(self) -> ShrinkOptions:
        """The `search.shrink_*` options, checked once (one ConfigError naming the option)."""
        return check_shrink_options(self.search_cfg)

    @property
    def architect(self) -> Architect:
        """The bi-level step over this module's optimisers (built on first use in a fit)."""
        w_opt, a_opt = self.optimizers()
        if self._architect is None or self._architect.w_opt is not w_opt:
            self._architect = Architect(
                self.net,
                self.loss,
                w_opt,
                a_opt,
                second_order=bool(self.search_cfg.second_order),
                grad_clip=self.search_cfg.get("grad_clip"),
                backward=self.manual_backward,
                finite=self._finite_or_skip,
                check_arch_grads=str(self.trainer.precision) != "16-mixed",
                clip_before_step=False,
                penalty=self.cost_penalty if self.cost_target else None,
                arch_grad_hook=self._null_grads if null_mode(self.search_cfg) == "grad" else None,
            )
        return self._architect

    def cost_penalty(self) -> torch.Tensor:
        """The resource target's term of the arch loss, on this forward's op weights softmax(alpha / T)."""
        return self.cost_target.penalty(F.softmax(self.net.alpha / self.net.alpha_temperature, dim=-1))

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        """(1) arch step on batch['arch'] unless warming up, (2) weight step on batch['weight']."""
        if self.current_epoch >= int(self.search_cfg.warmup_epochs):
            self.arch_step(self.arch_batch(batch["arch"]), batch["weight"])
        self.weight_step(batch["weight"])

    def _null_grads(self, params: list[nn.Parameter]) -> None:
        """`search.null=grad`: this step's arch gradients become Gaussian noise of the same norm."""
        null_grads(params, int(self.cfg.get("seed", 0)), self.global_step)

    def arch_batch(self, batch: Batch) -> Batch:
        """The arch half's batch; under `search.null=labels` its labels are unlearnable noise (the null search)."""
        if null_mode(self.search_cfg) != "labels":
            return batch
        x, y = batch
        return x, null_labels(y, self.num_classes, self.ignore_index, int(self.cfg.get("seed", 0)), self.global_step)

    def arch_step(self, arch_batch: Batch, weight_batch: Batch, forward: Forward | None = None) -> None:
        """One architecture update (first-order, or unrolled with search.second_order); `forward`: Architect.arch_step."""
        loss = self.architect.arch_step(arch_batch, weight_batch, forward)
        if loss is not None:
            self.log("train/arch_loss", loss, on_step=True, on_epoch=True, batch_size=arch_batch[0].shape[0])

    def weight_step(self, weight_batch: Batch) -> None:
        """One weight update; the norm clipping happens in on_before_optimizer_step (after AMP unscale)."""
        loss = self.architect.weight_step(weight_batch)
        if loss is not None:
            self.log(
                "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=weight_batch[0].shape[0]
            )

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # called after AMP unscaling, so the clip threshold is in true gradient units
        if optimizer is self.trainer.optimizers[0]:
            self.architect.clip_weights()

    def _finite_or_skip(self, loss: torch.Tensor, which: str) -> bool:
        """True if `loss` is finite on every rank; else skip (search.skip_nonfinite) or checkpoint and raise.

        Taken before `manual_backward`, the decision is all-reduced so that all DDP ranks skip or
        stop together (a rank left in the gradient all-reduce would hang).
        """
        if all_ranks_finite(loss):
            return True
        where = f"epoch {self.current_epoch}, batch {self.trainer.fit_loop.epoch_loop.batch_progress.current.completed}"
        if self.search_cfg.skip_nonfinite:
            self.log("train/skipped_nonfinite", 1.0, on_step=True, reduce_fx="sum")
            return False
        path = self.out_dir / "checkpoints" / "nonfinite.ckpt"
        self.trainer.save_checkpoint(path)
        value = loss.item() if not torch.isfinite(loss).all() else "non-finite on another DDP rank"
        raise NonFiniteError(
            f"{which} is {value} at {where}; checkpoint saved to {path}. "
            "Lower search.weight_lr / search.arch_lr, or set search.skip_nonfinite=true"
        )

    def on_train_epoch_end(self) -> None:
        for sched in self.lr_schedulers() if isinstance(self.lr_schedulers(), list) else [self.lr_schedulers()]:
            sched.step()
        self.epochs_done = self.current_epoch + 1
        # before the snapshot, the artifacts and (ModelCheckpoint runs after this hook) the checkpoint
        if hasattr(self.net, "op_keep") and self.shrink_options.due(
            self.epochs_done, int(self.search_cfg.warmup_epochs)
        ):
            self.shrink()
        self.arch_history = [h for h in self.arch_history if h["epoch"] < self.epochs_done]
        self.arch_history.append({"epoch": self.epochs_done, **self.arch_snapshot()})
        for name, param in zip(self.arch_names, self._params(self.arch_names)):
            assert_same_across_ranks(param, name)  # rank 0 exports; the others must hold the same arch
        if self.trainer.is_global_zero:
            self.export_artifacts(self.out_dir, final=False)

    def shrink(self, loader: Iterable | None = None) -> dict[str, Any]:
        """One progressive-shrinking step (lit/perturb.py `shrink_step`): per edge the weakest op by
        perturbation score leaves the supernet for good (`op_keep`). Scored on `loader`, else the first
        `search.shrink_batches` batches of `search.perturb_split` (never val). Returns its record.

        DDP: every rank scores from the same batches (the scoring loader has no sampler), so
        collectives inside the forwards (SyncBatchNorm) stay matched, as in `select_cell`; the mask
        and the record are then rank 0's, broadcast, so a last-bit difference between ranks in a
        near tie cannot leave the ranks with different supernets.
        """
        s = self.search_cfg
        opts = self.shrink_options
        if loader is None:
            datamodule = self.trainer.datamodule
            if not hasattr(datamodule, "scoring_dataloader"):
                raise ConfigError(
                    "search.shrink_every needs the datamodule's scoring set; fit through stage=cell_search"
                )
            loader = datamodule.scoring_dataloader(str(s.get("perturb_split", "arch")))
            if opts.batches is not None:  # held for the step: loaded once, not once per scoring pass
                loader = list(itertools.islice(loader, opts.batches))
        start = time.perf_counter()
        step = shrink_step(copy.deepcopy(self.net), loader, Scoring.from_cfg(self.cfg, self.num_classes), opts.min_ops)
        record = shrink_record(step, self.epochs_done, time.perf_counter() - start)
        keep = step["keep"]
        if self._trainer is not None and self.trainer.world_size > 1:
            keep, record = self.trainer.strategy.broadcast((keep, record), src=0)
        self.net.op_keep = keep.to(self.net.alpha.device)
        self.shrink_history = [h for h in self.shrink_history if h["epoch"] < record["epoch"]] + [record]
        log.info("shrink at epoch %d: removed %s in %.2f s", record["epoch"], record["pruned"], record["seconds"])
        return record

    def on_train_end(self) -> None:
        # before on_fit_end (the artifacts) and before WriteResult (search.json); every rank runs it
        # (identical data and arithmetic), so collectives such as SyncBatchNorm's stay matched
        if hasattr(self.net, "arch_weights"):  # a cell supernet; the trellis stage selects in its own module
            self.selection = select_cell(self.net, self.cfg, self.trainer.datamodule)
            opts = self.shrink_options
            if opts.every:
                split = str(self.search_cfg.get("perturb_split", "arch"))
                self.selection["evidence"]["shrink"] = shrink_evidence(
                    opts, split, self.shrink_history, self.net.op_keep
                )

    def on_fit_end(self) -> None:
        self.final_arch = self.derive_arch(final=True)
        if self.trainer.is_global_zero:
            self.export_artifacts(self.out_dir, final=True, arch=self.final_arch)
            self.export_evolution(self.out_dir)

    def arch_snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """The architecture weights now: {"alpha": {"edge a->b": {op: softmax(alpha) weight}}} ({} for a bare net)."""
        if not hasattr(self.net, "arch_weights"):  # any net with arch_parameters() searches; only supernets name edges
            return {}
        weights = self.net.arch_weights().tolist()
        return {"alpha": {f"edge {a}->{b}": dict(zip(PRIMITIVES, row)) for (a, b), row in zip(EDGES, weights)}}

    def export_evolution(self, out: Path) -> None:
        """DIR/arch_history.json and one `<name>_evolution.png` per snapshot entry (weights over epochs)."""
        from rspnet.viz import save_figure
        from rspnet.viz.curves import evolution_figure

        if not self.arch_history:
            return
        atomic_write_json(out / "arch_history.json", {"epochs": self.arch_history})
        epochs = [h["epoch"] for h in self.arch_history]
        for name in self.arch_history[-1]:
            if name == "epoch":
                continue
            groups = self.arch_history[-1][name]
            series = {g: {c: [h[name][g][c] for h in self.arch_history] for c in groups[g]} for g in groups}
            title = f"{EVOLUTION_TITLES.get(name, name)} over search epochs"
            save_figure(evolution_figure(epochs, series, title), out / f"{name.split('_')[0]}_evolution.png", dpi=70)

    # -- validation ---------------------------------------------------------------------
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        logits = logits if logits.shape[-2:] == y.shape[-2:] else resize(logits, y.shape[-2:])  # label resolution
        self.log("select/loss", self.loss(logits, y), on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        self.val_metric.update(logits.argmax(1), y)

    def on_validation_epoch_end(self) -> None:
        res = self.val_metric.compute()  # reduced across DDP ranks by torchmetrics
        self.val_metric.reset()
        self.log("select/miou", res["miou"], prog_bar=True)
        self.log("select/pixel_acc", res["pixel_acc"])
        if hasattr(self.net, "arch_metrics"):
            self.log_dict({f"arch/{k}": v for k, v in self.net.arch_metrics().items()})

    # -- artifacts ----------------------------------------------------------------------
    def search_meta(self) -> dict[str, Any]:
        """The `search` block of the artifacts: dataset, seed, and the budget (epochs, arch optimiser, split)."""
        s = self.search_cfg
        arch_lr = s.arch_lr if s.arch_optim == "sgd" else s.arch_adam_lr
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        return {
            "dataset": str(self.cfg.dataset.name),
            "epochs": int(self.epochs_done),
            "seed": int(self.cfg.get("seed", 0)),
            "max_epochs": int(max_epochs) if max_epochs is not None else None,
            "model": str(self.cfg.model.name),
            "arch_optim": str(s.arch_optim),
            "arch_lr": _json_number(arch_lr),
            "weight_lr": _json_number(s.weight_lr),
            "warmup_epochs": int(s.warmup_epochs),
            "arch_split": float(s.arch_split),
            "second_order": bool(s.second_order),
            "null": null_mode(s) or False,
            "select": str(s.get("select", "argmax")),
        }

    def derive_arch(self, final: bool) -> Any:
        """The searched architecture now (a Genotype for a cell supernet; None for a bare net)."""
        return self.derive_genotype(final) if hasattr(self.net, "arch_weights") else None

    def derive_genotype(self, final: bool) -> Any:
        """The searched cell now: argmax (or the selection's ops once the search ended), held to a resource target."""
        meta, ops = self.search_meta(), None
        if final and self.selection is not None:  # before the search ends the ops are softmax(alpha)'s argmax
            meta["evidence"], ops = self.selection["evidence"], self.selection["ops"]
        genotype = self.net.genotype(meta, ops=ops)
        if self.cost_target:  # search.select=argmax only (lit/perturb.check_select_cfg)
            genotype = self.cost_target.apply(genotype, self.net.arch_weights())
        genotype.complete = final  # per-epoch exports say the search is still running; loaders refuse them
        return genotype

    def export_artifacts(self, out: Path, final: bool, arch: Any = None) -> None:
        """Stage 1: DIR/genotype.json, DIR/cell.png, DIR/alpha.png (+ heatmap to the logger); `arch`: the
        genotype already derived (else derived now)."""
        from rspnet.utils.loggers import log_image
        from rspnet.viz import figure_to_rgb, save_figure
        from rspnet.viz.cell import cell_figure
        from rspnet.viz.heatmap import alpha_heatmap

        genotype = arch if arch is not None else self.derive_genotype(final)
        genotype.save(out / "genotype.json")
        save_figure(cell_figure(genotype), out / "cell.png")
        fig = alpha_heatmap(self.net.arch_weights(), title=f"softmax(alpha), epoch {self.epochs_done}")
        save_figure(fig, out / "alpha.png")
        if not final and self.logger:
            log_image(self.logger, "arch/alpha_heatmap", figure_to_rgb(fig), step=self.global_step)

    # -- checkpoints --------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the weight/arch data split is saved by the datamodule (SegDataModule.state_dict)
        checkpoint["rspnet"] = {"epochs_done": self.epochs_done, "rng": rng_state(), "arch_history": self.arch_history}
        keep = getattr(self.net, "op_keep", None)
        # progressive shrinking: the ops removed so far and the steps' records (absent: nothing removed)
        if keep is not None:
            checkpoint["rspnet"]["op_keep"] = keep.cpu().tolist()
        if self.shrink_history:
            checkpoint["rspnet"]["shrink_history"] = self.shrink_history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # runs before Lightning's strict load_state_dict: a checkpoint of another preset is one clear line
        check_state_dict(self, checkpoint["state_dict"], f"ckpt_path={self.trainer.ckpt_path}")
        state = checkpoint.get("rspnet", {})
        self.epochs_done = int(state.get("epochs_done", 0))
        self.arch_history = list(state.get("arch_history", []))
        # checkpoints written before progressive shrinking (or without it) hold no mask: every op is kept
        if hasattr(self.net, "op_keep"):
            keep = state.get("op_keep")
            self.net.op_keep = torch.tensor(keep, dtype=torch.float32) if keep is not None else None
        self.shrink_history = [h for h in state.get("shrink_history", []) if h["epoch"] <= self.epochs_done]
        if "rng" in state:
            set_rng_state(state["rng"])


def _json_number(value: Any) -> float | str:
    """A float for the artifact's JSON; inf/NaN (only in deliberate stress tests) as its string."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def steps_to_epochs(max_steps: int, batches: float, warmup_epochs: int) -> int:
    """Epochs until `max_steps` optimizer steps: one per batch while warming up, two (arch + weight) after."""
    if not 0 < batches < float("inf"):
        return 1
    epochs = steps = 0
    while steps < max_steps:
        steps += int(batches) * (1 if epochs < warmup_epochs else 2)
        epochs += 1
    return max(1, epochs)
