"""Stage-2 search module: the bi-level step over `MacroSupernet`, path scores and the macro.json export.

`MacroSearchModule` scores each candidate input of a node by its mean PAM path weight on the
arch half of train (`PathScoreAccumulator`, all-reduced under DDP) and exports DIR/macro.json
(top `macro.top_k` inputs per node), DIR/trellis.png and DIR/beta.png from its epoch-end hook.
`macro.select=perturb` ranks the inputs instead by the harm their removal does to the trained
supernet (lit/macro_select.py), measured once at the end of training. macro.json's
`search.evidence` holds the per-node decisiveness and split-half reliability of both rankings.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.genotype import MacroArch, MacroInput, MacroNode, normalized_entropy
from rspnet.lit.macro_select import (
    Batch,
    PathScoreAccumulator,
    PerturbResult,
    node_label,
    perturbation_drops,
    rows_evidence,
)
from rspnet.lit.search_module import SearchModule
from rspnet.models.macro_cost import MacroTarget
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.search_space.evidence import null_labels, null_mode

log = logging.getLogger(__name__)
# null_labels "step" of the i-th perturbation scoring batch: apart from every training step's labels
NULL_SCORING_STEP = 10**9


class MacroSearchModule(SearchModule):
    """SearchModule that scores paths by their mean PAM weight on the arch half of train.

    The score of a candidate is the mean of its path weight w_k over every architecture-step
    batch (the held-out arch half of the train split, never `val`) of the last
    `macro.score_epochs` epochs, taken from the arch step's own forward pass, i.e. in train
    mode, the BN mode the CAM is trained in (SPEC §2.5). Before that window the accumulator
    holds the latest epoch, so intermediate exports are meaningful. It is saved in every
    checkpoint; under DDP the sums and counts are all-reduced at every training epoch end.
    `score_halves` accumulate the same weights over alternate arch steps (even / odd): their
    agreement is the split-half reliability of the scores.
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
        self.score_halves = (PathScoreAccumulator(start), PathScoreAccumulator(start))
        self._scored_steps = 0
        self.select = str(cfg.macro.get("select", "score"))
        self.perturbation: PerturbResult | None = None  # set at train end with macro.select=perturb
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
            for acc in (self.scores, *self.score_halves):
                acc.reset(epoch)

    def arch_step(self, arch_batch: Any, weight_batch: Any) -> None:
        """The architecture step; the path weights of its forward on the arch batch are scored.

        The step is handed that forward (`Architect.arch_step(forward=)`: at w, or at the virtual w' of
        second order; never the weight-batch forwards), which keeps the path weights it computed.
        """
        seen: list[dict] = []

        def scored_forward(x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            seen.append(dict(self.net.path_weights))
            return out

        super().arch_step(arch_batch, weight_batch, scored_forward)
        x = arch_batch[0]
        if seen and all(torch.isfinite(w).all() for w in seen[-1].values()):
            half = self.score_halves[self._scored_steps % 2]
            self._scored_steps += 1
            for acc in (self.scores, half):
                for node, w in seen[-1].items():
                    acc.add(self.slices[node], w)
                acc.add_count(x.shape[0])

    def on_train_epoch_end(self) -> None:
        accs = (self.scores, *self.score_halves)
        total = torch.cat([acc.local for acc in accs])
        if self.trainer.world_size > 1:
            # one collective for sums and counts; NCCL needs the tensor on the rank's device
            total = self.trainer.strategy.reduce(total.to(self.device), reduce_op="sum").cpu()
        for acc, part in zip(accs, total.split([len(acc.local) for acc in accs])):
            acc.total = part.clone()
        self.log_dict(self.arch_metrics())
        super().on_train_epoch_end()  # exports macro.json from the reduced scores

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rspnet"]["path_scores"] = self.scores.state_dict()
        checkpoint["rspnet"]["path_score_halves"] = [acc.state_dict() for acc in self.score_halves]
        checkpoint["rspnet"]["scored_steps"] = self._scored_steps  # which half the next arch step feeds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        world_size = self.trainer.world_size if self._trainer is not None else 1
        self._scored_steps = int(checkpoint.get("rspnet", {}).get("scored_steps", 0))
        if "path_scores" in checkpoint.get("rspnet", {}):
            self.scores.load_state_dict(checkpoint["rspnet"]["path_scores"], world_size)
        # absent in checkpoints written before the split-half evidence: the halves restart empty
        for acc, state in zip(self.score_halves, checkpoint.get("rspnet", {}).get("path_score_halves", [])):
            acc.load_state_dict(state, world_size)

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

    def score_halves_means(self) -> tuple[dict[tuple[int, int], list[float]], ...] | None:
        """The path scores of the even and of the odd arch steps, or None while a half has no sample."""
        means = [acc.mean for acc in self.score_halves]
        if any(m is None for m in means):
            return None
        return tuple({node: m.tolist()[sl] for node, sl in self.slices.items()} for m in means)

    def selection_scores(self) -> tuple[dict[tuple[int, int], list[float]], str]:
        """What ranks the inputs and its name: the perturbation drops once measured, else the path scores."""
        if self.perturbation is not None:
            return self.perturbation.drops, f"perturb_{self.perturbation.metric}_drop"
        return self.path_scores()[0], "path_weight"

    def macro_arch(self) -> MacroArch:
        """Top `macro.top_k` inputs per node by the selection score (ties: earlier candidate first)."""
        scores, source = self.path_scores()
        ranking, ranked_by = self.selection_scores()
        nodes = []
        for node, cands in self.net.candidates.items():
            ranked = sorted(range(len(cands)), key=lambda k: -ranking[node][k])[: self.top_k]
            inputs = tuple(MacroInput(cands[k][0], cands[k][1], round(float(ranking[node][k]), 6)) for k in ranked)
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
            "select": self.select,
            "selection_score": ranked_by,  # what the inputs' "score" fields are
            "evidence": self.evidence(scores),
        }
        return MacroArch(
            layers=self.net.layers,
            scales=list(self.net.scales),
            top_k=self.top_k,
            nodes=nodes,
            search=meta,
            provenance="searched",
        )

    def evidence(self, scores: dict[tuple[int, int], list[float]]) -> dict[str, Any]:
        """Per node decisiveness and split-half reliability of the path scores (+ of the perturbation drops)."""
        halves = self.score_halves_means()
        counts = [int(acc.total[-1]) if acc.total is not None else 0 for acc in self.score_halves]
        out: dict[str, Any] = {
            "path_scores": rows_evidence(self.net.candidates, scores, halves, as_probs=True)
            | {"halves": "alternate arch steps of the scoring epochs", "half_samples": counts}
        }
        p = self.perturbation
        if p is not None:
            drops = {
                node_label(n): {node_label(c): round(d, 6) for c, d in zip(cands, p.drops[n])}
                for n, cands in self.net.candidates.items()
                if len(cands) > 1
            }
            out["perturb"] = rows_evidence(self.net.candidates, p.drops, p.halves, as_probs=False) | {
                "split": str(self.cfg.macro.perturb_split),
                "metric": p.metric,
                "intact": round(p.intact, 6),
                "batches": p.batches,
                "samples": p.samples,
                "seconds": p.seconds,
                "halves": "alternate scoring batches",
                "drops": drops,
            }
        return out

    # -- perturbation selection -----------------------------------------------------------
    def on_train_end(self) -> None:
        # before on_fit_end: search.json (WriteResult) and the final macro.json both see the drops;
        # every DDP rank measures the same drops (same weights, same batches, no collective)
        if self.select == "perturb":
            self.perturbation = self.perturb_inputs()

    def perturb_inputs(self, batches: Iterable[Batch] | None = None) -> PerturbResult:
        """Harm of removing each candidate input (lit/macro_select.py) on `batches`, else `macro.perturb_split`."""
        m = self.cfg.macro
        if batches is None:
            loader = self.trainer.datamodule.scoring_dataloader(str(m.perturb_split))
            limit = m.get("perturb_batches")
            batches = loader if limit is None else itertools.islice(loader, int(limit))
        result = perturbation_drops(
            self.net, self.scoring_batches(batches), self.num_classes, self.ignore_index, str(m.perturb_metric)
        )
        log.info(
            "macro perturbation: %d removals x %d batches (%d images, macro.perturb_split=%s) in %.1f s",
            sum(len(c) for c in self.net.candidates.values() if len(c) > 1),
            result.batches,
            result.samples,
            m.perturb_split,
            result.seconds,
        )
        return result

    def scoring_batches(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """`batches` on this module's device; under `search.null=true` with null labels (keyed apart from training)."""
        null, seed = null_mode(self.search_cfg) == "labels", int(self.cfg.get("seed", 0))
        for i, (x, y) in enumerate(batches):
            x, y = x.to(self.device), y.to(self.device)
            if null:
                y = null_labels(y, self.num_classes, self.ignore_index, seed, NULL_SCORING_STEP + i)
            yield x, y

    def arch_snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """softmax(beta) and the path scores now, per node "(layer,scale)" and candidate input."""
        scores, _ = self.path_scores()
        betas = {node: torch.softmax(b.detach().float(), 0).cpu().tolist() for node, b in self.net.betas().items()}

        def per_node(values: dict[tuple[int, int], list[float]]) -> dict[str, dict[str, float]]:
            return {
                node_label(node): {node_label(c): float(w) for c, w in zip(cands, values[node])}
                for node, cands in self.net.candidates.items()
            }

        return {"beta": per_node(betas), "path_scores": per_node(scores)}

    def arch_metrics(self) -> dict[str, float]:
        """Mean normalised entropy of the path scores and of softmax(beta), logged each epoch."""
        search = self.macro_arch().search
        metrics = {"arch/path_entropy": search["path_entropy"], "arch/beta_entropy": search["beta_entropy"]}
        reliability = search["evidence"]["path_scores"]["split_half"] or {}
        if reliability.get("spearman") is not None:
            metrics["arch/path_split_half"] = reliability["spearman"]
        return metrics

    def derive_arch(self, final: bool) -> MacroArch:
        """The searched trellis now (top-k inputs per node), held to a resource target's band."""
        macro = self.macro_arch()
        if self.cost_target:  # search.target_*: the trellis held to the band (models/macro_cost.py)
            macro = self.cost_target.apply(macro, self.path_scores()[0], self.net.betas())
        macro.complete = final  # per-epoch exports say the search is still running; loaders refuse them
        return macro

    def export_artifacts(self, out: Path, final: bool, arch: MacroArch | None = None) -> None:
        """DIR/macro.json, DIR/trellis.png, DIR/beta.png (+ beta heatmap to the logger); `arch`: the
        trellis already derived (else derived now)."""
        from rspnet.utils.loggers import log_image
        from rspnet.viz import figure_to_rgb, save_figure
        from rspnet.viz.trellis import beta_heatmap, draw_trellis

        macro = arch if arch is not None else self.derive_arch(final)
        macro.save(out / "macro.json")
        draw_trellis(macro, out / "trellis.png", title=f"searched trellis, epoch {self.epochs_done} (width ~ score)")
        betas = {node: torch.softmax(b.detach().float(), 0).cpu().tolist() for node, b in self.net.betas().items()}
        fig = beta_heatmap(betas, self.net.candidates, title=f"softmax(beta), epoch {self.epochs_done}")
        save_figure(fig, out / "beta.png")
        if not final and self.logger:
            log_image(self.logger, "arch/beta_heatmap", figure_to_rgb(fig), step=self.global_step)


def _mean_entropy(dists: Any) -> float:
    """Mean over nodes of the normalised entropy of each node's candidate distribution (1-candidate nodes skipped)."""
    values = [normalized_entropy(d) for d in dists if len(d) > 1]
    return round(sum(values) / len(values), 6) if values else 0.0
