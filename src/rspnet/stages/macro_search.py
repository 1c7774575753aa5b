"""stage=macro_search: stage 2 — search the trellis connections with the Path Attention Module.

Reads the stage-1 cell (`genotype=PATH`), runs the bi-level search of `SearchModule` over
`MacroSupernet` (beta and the CAM MLPs in the arch optimiser) and writes DIR/macro.json
(top `macro.top_k` inputs per node), DIR/trellis.png and DIR/beta.png.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype, MacroArch, MacroInput, MacroNode
from rspnet.lit.search_module import SearchModule
from rspnet.models.macro_supernet import MacroSupernet

log = logging.getLogger(__name__)


class MacroSearchModule(SearchModule):
    """SearchModule that scores paths by their mean PAM weight on validation.

    The score of a candidate is the mean of its path weight w_k over every validation
    sample of the last `macro.score_epochs` epochs (SPEC §2.5). Before that window the
    accumulators hold the latest validation epoch, so intermediate exports are meaningful.
    Accumulators are buffers, hence in every checkpoint; under DDP they are all-reduced.
    """

    net: MacroSupernet

    def __init__(self, net: MacroSupernet, cfg: DictConfig) -> None:
        super().__init__(net, cfg)
        self.top_k = int(cfg.macro.top_k)
        self.score_epochs = int(cfg.macro.score_epochs)
        self.slices: dict[tuple[int, int], slice] = {}
        start = 0
        for node, cands in net.candidates.items():
            self.slices[node] = slice(start, start + len(cands))
            start += len(cands)
        self.register_buffer("score_sum", torch.zeros(start, dtype=torch.float64))
        self.register_buffer("score_count", torch.zeros((), dtype=torch.float64))
        # DDP-reduced mean of the window so far (what export_artifacts reads on rank 0)
        self.register_buffer("score_mean", torch.full((start,), float("nan"), dtype=torch.float64))
        self.register_buffer("score_reset_epoch", torch.tensor(-1))
        self.register_buffer("score_first_epoch", torch.tensor(-1))

    def window_start(self) -> int:
        """First epoch whose validation counts towards the final path scores."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 0:
            return 0  # step-limited run: no known last epoch, so every epoch counts
        return max(0, int(max_epochs) - self.score_epochs)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.sanity_checking:
            return
        epoch = self.current_epoch
        # reset once per epoch up to the window start; inside the window keep accumulating
        if epoch <= self.window_start() and int(self.score_reset_epoch) != epoch:
            self.score_sum.zero_()
            self.score_count.zero_()
            self.score_reset_epoch.fill_(epoch)
            self.score_first_epoch.fill_(epoch)

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.trainer.sanity_checking:
            return
        # path_weights were recorded (detached) by the forward in validation_step
        for node, w in self.net.path_weights.items():
            self.score_sum[self.slices[node]] += w.sum(0).to(self.score_sum)
        self.score_count += next(iter(self.net.path_weights.values())).shape[0]

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        total, count = self.score_sum.clone(), self.score_count.clone()
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            count = self.trainer.strategy.reduce(count, reduce_op="sum")
        if count > 0:
            self.score_mean.copy_(total / count)

    def path_scores(self) -> tuple[dict[tuple[int, int], list[float]], str]:
        """Per node the candidate scores, and where they come from (validation or softmax(beta))."""
        if not torch.isnan(self.score_mean).any():
            mean = self.score_mean.cpu().tolist()
            return {node: mean[sl] for node, sl in self.slices.items()}, "val_path_weights"
        # no validation batch ran (e.g. limit_val_batches=0): fall back to the input-free prior
        betas = self.net.betas()
        return {node: torch.softmax(betas[node].detach().float(), 0).cpu().tolist() for node in self.slices}, "softmax_beta"

    def macro_arch(self) -> MacroArch:
        """Top `macro.top_k` inputs per node by score (ties: earlier candidate first)."""
        scores, source = self.path_scores()
        nodes = []
        for node, cands in self.net.candidates.items():
            ranked = sorted(range(len(cands)), key=lambda k: -scores[node][k])[: self.top_k]
            inputs = tuple(MacroInput(cands[k][0], cands[k][1], round(float(scores[node][k]), 6)) for k in ranked)
            nodes.append(MacroNode(node[0], node[1], inputs))
        meta = self.search_meta() | {
            "genotype": str(self.cfg.get("genotype")),
            "lookback": self.net.lookback,
            "score_source": source,
            "score_epochs": self.score_epochs,
            "score_first_epoch": int(self.score_first_epoch),
            "rsp": bool(self.cfg.rsp.enabled),
        }
        return MacroArch(layers=self.net.layers, scales=list(self.net.scales), top_k=self.top_k, nodes=nodes, search=meta)

    def export_artifacts(self, out: Path, final: bool) -> None:
        """DIR/macro.json, DIR/trellis.png, DIR/beta.png (+ beta heatmap to the logger)."""
        from rspnet.utils.loggers import log_image
        from rspnet.viz import figure_to_rgb, save_figure
        from rspnet.viz.trellis import beta_heatmap, draw_trellis

        macro = self.macro_arch()
        macro.save(out / "macro.json")
        draw_trellis(macro, out / "trellis.png", title=f"searched trellis, epoch {self.epochs_done} (width ~ score)")
        betas = {node: torch.softmax(b.detach().float(), 0).cpu().tolist() for node, b in self.net.betas().items()}
        fig = beta_heatmap(betas, self.net.candidates, title=f"softmax(beta), epoch {self.epochs_done}")
        save_figure(fig, out / "beta.png")
        if not final and self.logger:
            log_image(self.logger, "arch/beta_heatmap", figure_to_rgb(fig), step=self.global_step)


def _check_macro_cfg(cfg: DictConfig) -> None:
    """One-line ConfigErrors for bad macro.* values (before any data is loaded)."""
    m = cfg.macro
    if int(m.top_k) < 1:
        raise ConfigError(f"macro.top_k={m.top_k}: must be >= 1 (paper: 2)")
    if int(m.score_epochs) < 1:
        raise ConfigError(f"macro.score_epochs={m.score_epochs}: must be >= 1")
    if m.get("lookback") is not None and int(m.lookback) < 1:
        raise ConfigError(f"macro.lookback={m.lookback}: must be >= 1, or null for all earlier layers")
    if int(m.mlp_hidden) < 1:
        raise ConfigError(f"macro.mlp_hidden={m.mlp_hidden}: must be >= 1")


def run_macro_search(cfg: DictConfig) -> dict:
    """Stage 2: search the trellis for the cell in `genotype=PATH`; returns the result dict."""
    from rspnet.data import build_datamodule
    from rspnet.stages.search import fit_search
    from rspnet.utils.config import require

    genotype_path = require(cfg, "genotype", "pass genotype=DIR/genotype.json (written by stage=cell_search)")
    genotype = Genotype.load(genotype_path)
    _check_macro_cfg(cfg)
    if genotype.rsp != bool(cfg.rsp.enabled):
        log.warning("%s was searched with rsp=%s but rsp.enabled=%s; the config wins", genotype_path, genotype.rsp, cfg.rsp.enabled)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    net = MacroSupernet.from_cfg(cfg, genotype, datamodule.num_classes)
    module = MacroSearchModule(net, cfg)
    result = fit_search(cfg, module, datamodule)
    out = Path(str(cfg.paths.output_dir))
    print(f"macro search: top-{module.top_k} inputs for {len(net.nodes())} nodes -> {out / 'macro.json'}")
    return dict(result or {}) | {"macro": str(out / "macro.json"), "trellis": str(out / "trellis.png")}
