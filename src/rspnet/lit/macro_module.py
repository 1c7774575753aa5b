"""Stage-2 search module: the bi-level step over `MacroSupernet`, path scores and the macro.json export.

`MacroSearchModule` scores each candidate input of a node by its mean PAM path weight on the
arch half of train (`PathScoreAccumulator`, all-reduced under DDP) and exports DIR/macro.json
(top `macro.top_k` inputs per node), DIR/trellis.png and DIR/beta.png from its epoch-end hook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.errors import ConfigError
from rspnet.genotype import MacroArch, MacroInput, MacroNode, normalized_entropy
from rspnet.lit.search_module import SearchModule
from rspnet.models.macro_cost import MacroTarget
from rspnet.models.macro_supernet import MacroSupernet


class PathScoreAccumulator:
    """Per-rank sums of path weights over scoring samples (flat: node after node) + a count.

    Plain tensors rather than module buffers: DDP broadcasts buffers from rank 0 on every
    forward, which would overwrite the other ranks' sums before they are all-reduced.
    `total` is the all-reduced [sums..., count], set at every training epoch end.
    """

    def __init__(self, size: int) -> None:
        self.local = torch.zeros(size + 1, dtype=torch.float64)  # [sums..., count]
        self.total: torch.Tensor | None = None
        self.reset_epoch = self.first_epoch = -1

    def reset(self, epoch: int) -> None:
        """Start accumulating afresh at `epoch`."""
        # a new tensor, not zero_(): ddp_spawn pickles the module into shared memory, so an
        # in-place update would be seen (and counted) by every rank
        self.local = torch.zeros_like(self.local)
        self.reset_epoch = self.first_epoch = epoch

    def add(self, where: slice, weights: torch.Tensor) -> None:
        """Add the path weights [B, K] of one node's candidates (positions `where`)."""
        self.local[where] += weights.sum(0).to("cpu", torch.float64)

    def add_count(self, n: int) -> None:
        """Count `n` more scoring samples."""
        self.local[-1] += n

    @property
    def mean(self) -> torch.Tensor | None:
        """Reduced mean path weight per candidate, or None before any scoring sample."""
        return None if self.total is None or self.total[-1] <= 0 else self.total[:-1] / self.total[-1]

    def state_dict(self) -> dict[str, Any]:
        """The reduced totals (what every rank agrees on) and the window bookkeeping."""
        total = self.local if self.total is None else self.total
        return {"total": total.clone(), "reset_epoch": self.reset_epoch, "first_epoch": self.first_epoch}

    def load_state_dict(self, state: dict[str, Any], world_size: int) -> None:
        """Restore; each rank takes an equal share of the totals so the next all-reduce is exact."""
        total = state["total"]
        if total.shape != self.local.shape:
            raise ConfigError(
                "the checkpoint's path scores do not match this supernet; resume with the same model.* and macro.lookback"
            )
        self.total = total.clone()
        self.local = total / world_size  # a new (per-process) tensor, see reset()
        self.reset_epoch, self.first_epoch = int(state["reset_epoch"]), int(state["first_epoch"])


class MacroSearchModule(SearchModule):
    """SearchModule that scores paths by their mean PAM weight on the arch half of train.

    The score of a candidate is the mean of its path weight w_k over every architecture-step
    batch (the held-out arch half of the train split, never `val`) of the last
    `macro.score_epochs` epochs, taken from the arch step's own forward pass, i.e. in train
    mode, the BN mode the CAM is trained in (SPEC §2.5). Before that window the accumulator
    holds the latest epoch, so intermediate exports are meaningful. It is saved in every
    checkpoint; under DDP the sums and counts are all-reduced at every training epoch end.
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
        self.scores = PathScoreAccumulator(start)
        self.cost_target = MacroTarget.from_cfg(cfg, net.cell_ops, net.candidates)

    def cost_penalty(self) -> torch.Tensor:
        """The resource target's term of the arch loss: expected cost over path choices under softmax(beta)."""
        return self.cost_target.penalty(self.net.betas())

    def window_start(self) -> int:
        """First epoch whose arch steps count towards the final path scores."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 0:
            return 0  # step-limited run: no known last epoch, so every epoch counts
        return max(0, int(max_epochs) - self.score_epochs)

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        # reset once per epoch up to the window start; inside the window keep accumulating
        if epoch <= self.window_start() and self.scores.reset_epoch != epoch:
            self.scores.reset(epoch)

    def arch_step(self, arch_batch: Any, weight_batch: Any) -> None:
        """The architecture step; the path weights of its forward on the arch batch are scored."""
        x = arch_batch[0]
        seen: list[dict] = []

        def capture(module: Any, inputs: tuple, output: Any) -> None:
            if inputs and inputs[0] is x:  # second order also runs forwards on the weight batch
                seen.append(dict(module.path_weights))

        handle = self.net.register_forward_hook(capture)
        try:
            super().arch_step(arch_batch, weight_batch)
        finally:
            handle.remove()
        if seen and all(torch.isfinite(w).all() for w in seen[-1].values()):
            for node, w in seen[-1].items():
                self.scores.add(self.slices[node], w)
            self.scores.add_count(x.shape[0])

    def on_train_epoch_end(self) -> None:
        total = self.scores.local.clone()
        if self.trainer.world_size > 1:
            # one collective for sums and count; NCCL needs the tensor on the rank's device
            total = self.trainer.strategy.reduce(total.to(self.device), reduce_op="sum").cpu()
        self.scores.total = total
        self.log_dict(self.arch_metrics())
        super().on_train_epoch_end()  # exports macro.json from the reduced scores

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rspnet"]["path_scores"] = self.scores.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "path_scores" in checkpoint.get("rspnet", {}):
            world_size = self.trainer.world_size if self._trainer is not None else 1
            self.scores.load_state_dict(checkpoint["rspnet"]["path_scores"], world_size)

    def path_scores(self) -> tuple[dict[tuple[int, int], list[float]], str]:
        """Per node the candidate scores, and where they come from (arch-step path weights or softmax(beta))."""
        mean = self.scores.mean
        if mean is not None:
            mean = mean.tolist()
            return {node: mean[sl] for node, sl in self.slices.items()}, "arch_path_weights"
        # no architecture step ran (e.g. search.warmup_epochs >= epochs): the input-free prior
        betas = self.net.betas()
        return {
            node: torch.softmax(betas[node].detach().float(), 0).cpu().tolist() for node in self.slices
        }, "softmax_beta"

    def macro_arch(self) -> MacroArch:
        """Top `macro.top_k` inputs per node by score (ties: earlier candidate first)."""
        scores, source = self.path_scores()
        nodes = []
        for node, cands in self.net.candidates.items():
            ranked = sorted(range(len(cands)), key=lambda k: -scores[node][k])[: self.top_k]
            inputs = tuple(MacroInput(cands[k][0], cands[k][1], round(float(scores[node][k]), 6)) for k in ranked)
            nodes.append(MacroNode(node[0], node[1], inputs))
        betas = {node: torch.softmax(b.detach().float(), 0).tolist() for node, b in self.net.betas().items()}
        meta = self.search_meta() | {
            "genotype": str(self.cfg.get("genotype")),
            "lookback": self.net.lookback,
            "top_k": self.top_k,
            "scoring": self.net.scoring,
            "score_source": source,
            "score_split": "train arch half (search.arch_split)",
            "score_epochs": self.score_epochs,
            "score_first_epoch": self.scores.first_epoch,
            "rsp": bool(self.cfg.rsp.enabled),
            # 1 = every node weighs its candidates uniformly (the search decided nothing), 0 = one-hot
            "path_entropy": _mean_entropy(scores.values()),
            "beta_entropy": _mean_entropy(betas.values()),
        }
        return MacroArch(
            layers=self.net.layers,
            scales=list(self.net.scales),
            top_k=self.top_k,
            nodes=nodes,
            search=meta,
            provenance="searched",
        )

    def arch_snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """softmax(beta) and the path scores now, per node "(layer,scale)" and candidate input."""
        scores, _ = self.path_scores()
        betas = {node: torch.softmax(b.detach().float(), 0).cpu().tolist() for node, b in self.net.betas().items()}

        def per_node(values: dict[tuple[int, int], list[float]]) -> dict[str, dict[str, float]]:
            return {
                _label(node): {_label(c): float(w) for c, w in zip(cands, values[node])}
                for node, cands in self.net.candidates.items()
            }

        return {"beta": per_node(betas), "path_scores": per_node(scores)}

    def arch_metrics(self) -> dict[str, float]:
        """Mean normalised entropy of the path scores and of softmax(beta), logged each epoch."""
        search = self.macro_arch().search
        return {"arch/path_entropy": search["path_entropy"], "arch/beta_entropy": search["beta_entropy"]}

    def export_artifacts(self, out: Path, final: bool) -> None:
        """DIR/macro.json, DIR/trellis.png, DIR/beta.png (+ beta heatmap to the logger)."""
        from rspnet.utils.loggers import log_image
        from rspnet.viz import figure_to_rgb, save_figure
        from rspnet.viz.trellis import beta_heatmap, draw_trellis

        macro = self.macro_arch()
        if self.cost_target:  # search.target_*: the trellis held to the band (models/macro_cost.py)
            macro = self.cost_target.apply(macro, self.path_scores()[0], self.net.betas())
        macro.complete = final  # per-epoch exports say the search is still running; loaders refuse them
        macro.save(out / "macro.json")
        draw_trellis(macro, out / "trellis.png", title=f"searched trellis, epoch {self.epochs_done} (width ~ score)")
        betas = {node: torch.softmax(b.detach().float(), 0).cpu().tolist() for node, b in self.net.betas().items()}
        fig = beta_heatmap(betas, self.net.candidates, title=f"softmax(beta), epoch {self.epochs_done}")
        save_figure(fig, out / "beta.png")
        if not final and self.logger:
            log_image(self.logger, "arch/beta_heatmap", figure_to_rgb(fig), step=self.global_step)


def _label(node: Any) -> str:
    """A trellis node (layer, scale) as "(l,s)"."""
    return f"({node[0]},{node[1]})"


def _mean_entropy(dists: Any) -> float:
    """Mean over nodes of the normalised entropy of each node's candidate distribution (1-candidate nodes skipped)."""
    values = [normalized_entropy(d) for d in dists if len(d) > 1]
    return round(sum(values) / len(values), 6) if values else 0.0
