"""trainer=ddp_sim (2 CPU processes, gloo, ddp_spawn): the DDP code path of every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rspnet.genotype import Genotype
from rspnet.lit.macro_module import MacroSearchModule
from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule, build_seg_module

pytestmark = pytest.mark.distributed

TINY = [
    "trainer=ddp_sim",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "dataset.num_train=16",
    "dataset.num_val=4",
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
    "search.warmup_epochs=0",
]


class RankRecordingSearchModule(SearchModule):
    """SearchModule that also saves, per rank, its alpha and a fingerprint of the batches it saw."""

    drift = 0.0  # > 0: rank 1 nudges alpha after every step, as a non-all-reduced arch update would

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seen = [*getattr(self, "seen", []), float(batch["arch"][0].sum())]
        super().training_step(batch, batch_idx)
        if self.drift and self.global_rank == 1:
            with torch.no_grad():
                self.net.arch_parameters()[0].add_(self.drift)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        state = {
            "alpha": [p.detach().clone() for p in self.net.arch_parameters()],
            "seen": self.seen,
            "world_size": self.trainer.world_size,
        }
        torch.save(state, self.out_dir / f"rank{self.global_rank}.pt")


def test_ddp_sim_cell_search_keeps_alpha_identical_across_ranks(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.lit.fit import fit_search
    from rspnet.models.supernet import CellSupernet

    out = tmp_path / "cell"
    cfg = make_cfg("stage=cell_search", *TINY, out=out)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    net = CellSupernet.from_cfg(cfg, dm.num_classes)
    alpha0 = [p.detach().clone() for p in net.arch_parameters()]
    result = fit_search(cfg, RankRecordingSearchModule(net, cfg), dm)

    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["seen"] != r1["seen"]  # each rank trained on its own shard...
    for a0, a1, init in zip(r0["alpha"], r1["alpha"], alpha0):
        assert torch.equal(a0, a1)  # ...yet the all-reduced arch gradient keeps alpha identical
        assert not torch.equal(a0, init)  # and the arch steps did move it
    saved = Genotype.load(out / "genotype.json")  # written once, by rank 0
    assert saved.ops == Genotype.from_weights(torch.softmax(r0["alpha"][0], -1).tolist(), True, {}).ops
    assert isinstance(result["objective"], float)


class RankRecordingMacroModule(MacroSearchModule):
    """MacroSearchModule that saves, per rank, its beta, CAM MLPs and path scores after the epoch."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seen = [*getattr(self, "seen", []), float(batch["arch"][0].sum())]
        super().training_step(batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        state = {
            "arch": [p.detach().clone() for p in self.net.arch_parameters()],
            "beta": [b.detach().clone() for b in self.net.betas().values()],
            "seen": self.seen,
            "scores": self.scores.mean,
            "world_size": self.trainer.world_size,
        }
        torch.save(state, self.out_dir / f"rank{self.global_rank}.pt")


@pytest.mark.slow
def test_ddp_sim_macro_search_keeps_beta_identical_across_ranks(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.lit.fit import fit_search
    from rspnet.models.macro_supernet import MacroSupernet

    out = tmp_path / "macro"
    genotype = Genotype.from_ops(["conv_3x3", "dw_conv_3x3", "skip_connect"], rsp=True)
    cfg = make_cfg("stage=macro_search", *TINY, "model.layers=2", out=out)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    net = MacroSupernet.from_cfg(cfg, genotype, dm.num_classes)
    beta0 = [b.detach().clone() for b in net.betas().values()]
    fit_search(cfg, RankRecordingMacroModule(net, cfg), dm)

    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["seen"] != r1["seen"]
    assert all(torch.equal(a, b) for a, b in zip(r0["arch"], r1["arch"]))  # beta and the CAM MLPs
    assert all(torch.equal(a, b) for a, b in zip(r0["beta"], r1["beta"]))
    assert any(not torch.equal(b, init) for b, init in zip(r0["beta"], beta0))  # the arch steps moved beta
    assert torch.equal(r0["scores"], r1["scores"])  # path scores all-reduced: macro.json is the same from any rank


class DriftingSearchModule(RankRecordingSearchModule):
    drift = 1e-3


@pytest.mark.slow
def test_ddp_sim_search_stops_when_ranks_disagree(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.lit.fit import fit_search
    from rspnet.models.supernet import CellSupernet

    cfg = make_cfg("stage=cell_search", *TINY, out=tmp_path / "cell")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    with pytest.raises(Exception, match="differs between DDP rank 0 and rank 1"):
        fit_search(cfg, DriftingSearchModule(CellSupernet.from_cfg(cfg, dm.num_classes), cfg), dm)
    assert not (tmp_path / "cell" / "genotype.json").exists()  # no genotype from a desynchronised search


@pytest.mark.slow
def test_ddp_sim_macro_search_and_train(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.cell_search import run as run_cell_search
    from rspnet.stages.macro_search import run as run_macro_search
    from rspnet.stages.train import run as run_train

    run_cell_search(make_cfg("stage=cell_search", *TINY, out=tmp_path / "cell"))
    genotype = str(tmp_path / "cell" / "genotype.json")
    macro = run_macro_search(make_cfg("stage=macro_search", *TINY, f"genotype={genotype}", out=tmp_path / "macro"))
    assert (tmp_path / "macro" / "macro.json").is_file() and isinstance(macro["objective"], float)
    train = run_train(
        make_cfg(
            "stage=train",
            *TINY,
            f"genotype={genotype}",
            f"macro_arch={tmp_path / 'macro' / 'macro.json'}",
            out=tmp_path / "train",
        )
    )
    saved = json.loads((tmp_path / "train" / "train.json").read_text())
    # one epoch of limit_train_batches=2 batches per rank: the counters come back from the ddp_spawn workers
    assert (saved["epochs"], saved["global_step"]) == (1, 2)
    assert (tmp_path / "train" / "checkpoints" / "last.ckpt").is_file() and train["objective"] is not None


class NanOnRankOneSearchModule(SearchModule):
    """Training losses are NaN on rank 1 only; each rank records the NonFiniteError it raised."""

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = super().loss(logits, target)
        return value * float("nan") if self.training and self.global_rank == 1 else value

    def _finite_or_skip(self, loss: torch.Tensor, which: str) -> bool:
        from rspnet.errors import NonFiniteError

        try:
            return super()._finite_or_skip(loss, which)
        except NonFiniteError as e:
            (self.out_dir / f"rank{self.global_rank}.error").write_text(str(e))
            raise


@pytest.mark.timeout(120)
def test_ddp_sim_nan_on_one_rank_stops_every_rank_with_one_error(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.errors import NonFiniteError
    from rspnet.lit.fit import fit_search
    from rspnet.models.supernet import CellSupernet

    out = tmp_path / "cell"
    cfg = make_cfg("stage=cell_search", *TINY, out=out)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    # the finite flag is all-reduced before manual_backward: rank 0 stops too instead of
    # waiting in the gradient all-reduce for a rank that has already left
    with pytest.raises(NonFiniteError, match=r"arch loss is .* at epoch 0.*nonfinite\.ckpt") as info:
        fit_search(cfg, NanOnRankOneSearchModule(CellSupernet.from_cfg(cfg, dm.num_classes), cfg), dm)
    assert "\n" not in str(info.value)
    errors = {r: (out / f"rank{r}.error").read_text() for r in (0, 1)}  # both ranks raised, at the same step
    assert "arch loss is nan" in errors[1] and "arch loss is non-finite on another DDP rank" in errors[0]
    assert (out / "checkpoints" / "nonfinite.ckpt").is_file()


class NanInputOnRankOneSegModule(SegModule):
    """Rank 1 trains on NaN images (a NaN loss there only); each rank records the NonFiniteError it raised."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        from rspnet.errors import NonFiniteError

        x, y = batch
        try:
            return super().training_step((x * float("nan") if self.global_rank == 1 else x, y), batch_idx)
        except NonFiniteError as e:
            (self.out / f"rank{self.global_rank}.error").write_text(str(e))
            raise


@pytest.mark.timeout(120)
def test_ddp_sim_training_nan_on_one_rank_stops_every_rank(make_cfg, tmp_path: Path) -> None:
    from rspnet.data import build_datamodule
    from rspnet.errors import NonFiniteError
    from rspnet.genotype import Genotype
    from rspnet.models.derived import default_macro
    from rspnet.utils.distributed import rank_errors
    from rspnet.utils.trainer import build_trainer

    out = tmp_path / "train"
    out.mkdir()
    cfg = make_cfg("stage=train", *TINY, "model.layers=1", "model.scales=[4,8]", "model.cells_per_node=1", out=out)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    genotype = Genotype.from_ops(["conv_3x3", "dw_conv_3x3", "skip_connect"], rsp=True, search={})
    base = build_seg_module(cfg, genotype, default_macro(cfg), dm.num_classes)
    module = NanInputOnRankOneSegModule(base.net, cfg.train, base.ignore_index, base.meta)
    module.out = out
    with pytest.raises(NonFiniteError, match="training loss is"), rank_errors():
        build_trainer(cfg, out, logger=False, enable_checkpointing=False).fit(module, datamodule=dm)
    errors = {r: (out / f"rank{r}.error").read_text() for r in (0, 1)}
    assert "training loss is nan" in errors[1] and "non-finite on another DDP rank" in errors[0]
