"""Progressive shrinking (`search.shrink_every`): the weakest op per edge by perturbation score leaves the
supernet during the search (lit/perturb.py `shrink_step`, lit/search_module.py `SearchModule.shrink`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype
from rspnet.lit import perturb
from rspnet.lit.perturb import Scoring, ShrinkOptions, check_options, select_cell, shrink_step
from rspnet.lit.search_module import SearchModule
from rspnet.search_space.ops import PRIMITIVES
from rspnet.stages import run_stage as run

TINY = ("stage=cell_search", "debug=tiny", "model=micro")
# a scorer's importance of each op (loss increase when removed): per edge the weakest is the row's minimum
IMPORTANCE = torch.tensor([[0.1, 0.5, 0.2, 0.0, 0.3], [0.9, 0.1, 0.05, 0.2, 0.3], [0.4, 0.1, 0.2, 0.3, 0.0]])


class _Data:
    """The datamodule hooks select_cell uses, over fixed random tensors."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def scoring_dataloader(self, split: str):
        return self.loader

    def search_dataloaders(self):
        return self.loader, self.loader


def _cfg(**search) -> OmegaConf:
    s = {"select": "argmax", "perturb_split": "arch", "perturb_retune_steps": 0, "null": False} | search
    return OmegaConf.create({"seed": 3, "dataset": {"ignore_index": 255}, "search": s})


def _fake_measure(masks: list[torch.Tensor], importance: torch.Tensor = IMPORTANCE):
    def measure(net, loader, scoring):
        masks.append(net.op_mask.clone())
        loss = float(((1 - net.op_mask) * importance).sum())
        return {"all": loss, "a": loss, "b": loss + 0.01 * loss**2, "miou": 1.0 - loss}

    return measure


def test_shrinking_removes_the_op_whose_removal_hurts_least(tiny_net, monkeypatch) -> None:
    masks: list[torch.Tensor] = []
    monkeypatch.setattr(perturb, "measure", _fake_measure(masks))
    net = tiny_net()
    step = shrink_step(net, [], Scoring(3, 255), min_ops=1)
    assert step["pruned"] == {0: "dil_conv_3x3", 1: "conv_5x5", 2: "skip_connect"}
    assert step["keep"].tolist() == [[float(v != row.min()) for v in row] for row in IMPORTANCE]
    assert step["rows"]["all"][1] == pytest.approx(IMPORTANCE[1].tolist())
    # one base under the full mask, then each op of each edge removed from that same mask (no edge order)
    assert len(masks) == 1 + 3 * 5 and all(int((1 - m).sum()) == 1 for m in masks[1:]) and net.op_mask is None
    net.op_keep = step["keep"]
    masks.clear()
    second = shrink_step(net, [], Scoring(3, 255), min_ops=1)
    assert second["pruned"] == {0: "conv_3x3", 1: "dw_conv_3x3", 2: "dw_conv_3x3"}
    assert second["rows"]["all"][0][3] is None and len(masks) == 1 + 3 * 4  # pruned ops are not scored again
    net.op_keep = second["keep"]
    masks.clear()
    assert shrink_step(net, [], Scoring(3, 255), min_ops=3)["pruned"] == {}  # 3 ops left: at min_ops...
    assert masks == []  # ...so nothing is measured


def test_a_real_shrink_step_scores_a_vanishing_op_at_zero_and_prunes_to_min_ops(tiny_net, tiny_loader) -> None:
    torch.manual_seed(0)
    net = tiny_net()
    with torch.no_grad():
        net.alpha[:, PRIMITIVES.index("conv_5x5")] = -40.0  # weight ~1e-18: removing it changes nothing
    loader = tiny_loader(n=4)
    for removed in range(1, 5):
        step = shrink_step(net, loader, Scoring(3, 255), min_ops=2)
        if removed == 1:
            assert all(abs(row[2]) < 1e-6 for row in step["rows"]["all"])
        net.op_keep = step["keep"]
        assert (net.op_keep.sum(1) == max(5 - removed, 2)).all()
    assert net.op_mask is None


def test_a_pruned_op_has_no_weight_no_alpha_gradient_and_is_never_selected(tiny_net, tiny_loader, monkeypatch) -> None:
    net = tiny_net()
    skip = PRIMITIVES.index("skip_connect")
    with torch.no_grad():
        net.alpha[:, skip] += 3.0  # the argmax on every edge...
    net.op_keep = torch.ones(3, 5)
    net.op_keep[:, skip] = 0.0  # ...pruned
    weights = net.arch_weights()
    assert (weights[:, skip] == 0).all() and torch.allclose(weights.sum(1), torch.ones(3))
    # the forward of weight and arch steps: the pruned op is out, as under a perturbation's op_mask
    x, y = next(iter(tiny_loader(n=4)))
    net.train()
    shrunk = net(x)
    keep, net.op_keep = net.op_keep, None
    net.op_mask = keep
    assert torch.allclose(shrunk, net(x), atol=1e-6)
    net.op_mask, net.op_keep = None, keep
    F.cross_entropy(net(x), y).backward()
    assert net.alpha.grad[:, skip].abs().max() < 1e-9 and net.alpha.grad.abs().max() > 1e-6
    net.zero_grad()
    assert "skip_connect" not in select_cell(net, _cfg(), _Data(tiny_loader(n=4)))["ops"]
    # perturb: the pruned op would be the most important, but it is not scored nor chosen
    importance = torch.zeros(3, 5)
    importance[:, skip] = 9.0
    importance[:, 1] = 1.0
    monkeypatch.setattr(perturb, "measure", _fake_measure([], importance))
    out = select_cell(net, _cfg(select="perturb"), _Data(tiny_loader(n=4)))
    assert out["ops"] == ["dw_conv_3x3"] * 3
    assert all(row[skip] is None for row in out["evidence"]["perturb"]["scores"])
    assert all(len(r) == 5 for r in out["evidence"]["alpha"]["half_scores"]["a"])  # full rows are written
    assert out["evidence"]["alpha"]["split_half"]["rows"] == 3


def test_the_module_shrinks_and_its_state_survives_a_checkpoint(make_cfg, tiny_net, tiny_loader) -> None:
    cfg = make_cfg("dataset.num_classes=3", "search.shrink_every=1", "search.shrink_min_ops=3")
    module = SearchModule(tiny_net(), cfg)
    for epoch in (1, 2, 3):
        module.epochs_done = epoch
        record = module.shrink(tiny_loader(n=4))
        assert record["epoch"] == epoch and len(record["pruned"]) == (3 if epoch < 3 else 0)
    assert (module.net.op_keep.sum(1) == 3).all() and [h["epoch"] for h in module.shrink_history] == [1, 2, 3]
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert json.loads(json.dumps(ckpt["rspnet"]["shrink_history"])) == module.shrink_history  # plain data
    restored = SearchModule(tiny_net(), cfg)
    restored.trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    restored.on_load_checkpoint(ckpt)
    assert torch.equal(restored.net.op_keep, module.net.op_keep.cpu())
    assert restored.shrink_history == module.shrink_history
    x = torch.randn(2, 3, 16, 16)
    restored.load_state_dict(ckpt["state_dict"])
    restored.net.train(), module.net.train()
    assert torch.allclose(restored(x), module(x), atol=1e-6)  # the restored supernet is the shrunk one
    # a checkpoint written before shrinking existed (no mask) loads with every op kept
    for key in ("op_keep", "shrink_history"):
        del ckpt["rspnet"][key]
    restored.on_load_checkpoint(ckpt)
    assert restored.net.op_keep is None and restored.shrink_history == []


def test_shrink_points_are_every_n_epochs_of_arch_steps() -> None:
    due = ShrinkOptions(every=2).due
    assert [e for e in range(1, 9) if due(e, warmup_epochs=3)] == [5, 7]
    assert [e for e in range(1, 4) if ShrinkOptions(every=1).due(e, 0)] == [1, 2, 3]
    assert not any(ShrinkOptions().due(e, 0) for e in range(1, 9))  # 0 = off


def test_cli_search_records_what_it_pruned_when_and_its_genotype_uses_only_kept_ops(rspnet_cli, tmp_path: Path) -> None:
    args = ("search.shrink_every=2", "search.warmup_epochs=1", "trainer.max_epochs=5", "search.shrink_batches=1")
    out = tmp_path / "s"
    proc = rspnet_cli(*TINY, *args, "search.select=perturb", f"paths.output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    genotype = Genotype.load(out / "genotype.json")
    shrink = genotype.search["evidence"]["shrink"]
    assert [s["epoch"] for s in shrink["steps"]] == [3, 5] and all(len(s["pruned"]) == 3 for s in shrink["steps"])
    assert {k: shrink[k] for k in ("every", "batches", "min_ops", "split")} == {
        "every": 2,
        "batches": 1,
        "min_ops": 1,
        "split": "arch",
    }
    kept = list(shrink["kept"].values())
    assert all(len(ops) == 3 for ops in kept)
    for step in shrink["steps"]:
        for e, (edge, op) in enumerate(step["pruned"].items()):
            assert op not in shrink["kept"][edge] and step["scores"][e][PRIMITIVES.index(op)] is not None
    assert all(op in ops for op, ops in zip(genotype.ops, kept))
    for edge, ops in zip(genotype.edges, kept):  # the genotype's weights are the shrunk supernet's
        assert [w > 0 for w in edge.weights] == [op in ops for op in PRIMITIVES]
    assert json.loads((out / "search.json").read_text())["evidence"]["shrink"] == shrink  # search.json too


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("shrink_every", -1, "search.shrink_every=-1 must be an integer >= 0"),
        ("shrink_batches", 0, "search.shrink_batches=0 must be an integer >= 1, or null"),
        ("shrink_min_ops", 0, "search.shrink_min_ops=0 must be an integer from 1 to 4"),
        ("shrink_min_ops", 5, "search.shrink_min_ops=5 must be an integer from 1 to 4"),
    ],
)
def test_bad_shrink_options_are_one_line(key: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        check_options(_cfg(**{key: value}).search)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("search.target_params=100000", "search.shrink_every=1 with search.target_params is not supported"),
        ("search.null=grad", "search.shrink_every=1 with search.null=grad is not supported"),
        ("search.shrink_min_ops=7", "search.shrink_min_ops=7 must be an integer from 1 to 4"),
        ("search.shrink_every=-2", "search.shrink_every=-2 is invalid: expected an integer >= 0"),
        ("search.shrink_batches=few", "search.shrink_batches=few is invalid: expected a positive integer or null"),
    ],
)
def test_shrinking_with_a_target_or_the_grad_null_is_refused_before_the_search(
    make_cfg, tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        run(make_cfg(*TINY, "search.shrink_every=1", extra, out=tmp_path / "t"))
    assert "\n" not in str(e.value) and not (tmp_path / "t" / "genotype.json").exists()


def _kill_at_epoch(epoch: int):
    def on_train_epoch_start(self: SearchModule) -> None:
        if self.current_epoch == epoch:
            raise RuntimeError("killed")

    return on_train_epoch_start


@pytest.mark.slow  # three tiny searches (~15 s); the fast round trip is test_the_module_shrinks_and_its_state_...
def test_a_killed_and_resumed_shrinking_search_gives_the_uninterrupted_genotype(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = (*TINY, "trainer.max_epochs=3", "trainer.deterministic=true", "search.shrink_every=1")
    run(make_cfg(*args, out=full))
    with monkeypatch.context() as m:
        m.setattr(SearchModule, "on_train_epoch_start", _kill_at_epoch(2))
        with pytest.raises(RuntimeError, match="killed"):
            run(make_cfg(*args, out=cut))
    ckpt = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and [h["epoch"] for h in ckpt["rspnet"]["shrink_history"]] == [1, 2]
    assert (torch.tensor(ckpt["rspnet"]["op_keep"]).sum(1) == 3).all()
    run(make_cfg(*args, "ckpt_path=last", out=cut))
    a, b = (Genotype.load(o / "genotype.json") for o in (full, cut))
    weights = [[w for e in g.edges for w in e.weights] for g in (a, b)]
    assert a.ops == b.ops and weights[0] == pytest.approx(weights[1], abs=1e-7)
    steps = [[s["pruned"] for s in g.search["evidence"]["shrink"]["steps"]] for g in (a, b)]
    assert steps[0] == steps[1] and len(steps[0]) == 3
