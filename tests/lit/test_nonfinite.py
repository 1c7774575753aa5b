"""NaN/inf in a loss, an arch gradient or alpha/beta: stop with NonFiniteError and a checkpoint, or
skip the step with `search.skip_nonfinite=true`; a genotype.json is never corrupted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, NonFiniteError
from rspnet.genotype import Genotype
from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule
from rspnet.stages import run_stage as run
from rspnet.stages.cell_search import run as run_cell_search
from rspnet.stages.train import run as run_train
from tests.conftest import CELL, TRAIN

pytestmark = pytest.mark.reliability

TWO_EPOCHS = (*CELL, "trainer.max_epochs=2")


def _nan_loss_from_epoch(monkeypatch: pytest.MonkeyPatch, cls: type, epoch: int) -> None:
    """Every training loss of `cls` becomes NaN from `epoch` on (validation losses stay finite)."""
    original = cls.loss

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = original(self, logits, target)
        return value * float("nan") if self.training and self.current_epoch >= epoch else value

    monkeypatch.setattr(cls, "loss", loss)


def _finite_alpha(ckpt: Path) -> torch.Tensor:
    alpha = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["net.alpha"]
    assert torch.isfinite(alpha).all()
    return alpha


def test_nan_loss_stops_with_a_checkpoint_and_keeps_the_previous_genotype(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    _nan_loss_from_epoch(monkeypatch, SearchModule, epoch=1)
    with pytest.raises(NonFiniteError, match=r"arch loss is nan at epoch 1.*nonfinite\.ckpt.*skip_nonfinite") as info:
        run_cell_search(make_cfg(*TWO_EPOCHS, out=out))
    assert "\n" not in str(info.value)
    _finite_alpha(out / "checkpoints" / "nonfinite.ckpt")
    # epoch 1's file, still valid, and marked as the partial search it is (consumers refuse it)
    genotype = Genotype.load(out / "genotype.json", allow_incomplete=True)
    assert genotype.search["epochs"] == 1
    with pytest.raises(ArtifactError, match="has not completed"):
        Genotype.load(out / "genotype.json")
    assert not list(out.glob(".*.tmp"))


def test_skip_nonfinite_skips_the_bad_steps_and_finishes(make_cfg, tmp_path: Path, monkeypatch) -> None:
    run(make_cfg(*CELL, "trainer.max_epochs=1", out=tmp_path / "one_epoch"))
    out = tmp_path / "run"
    _nan_loss_from_epoch(monkeypatch, SearchModule, epoch=1)
    result = run(make_cfg(*TWO_EPOCHS, "search.skip_nonfinite=true", out=out))
    assert result["epochs"] == 2 and Genotype.load(out / "genotype.json").search["epochs"] == 2
    # every step of epoch 2 was skipped: alpha is what one clean epoch gives (same seed)
    assert torch.equal(
        _finite_alpha(out / "checkpoints" / "last.ckpt"),
        _finite_alpha(tmp_path / "one_epoch" / "checkpoints" / "last.ckpt"),
    )


def test_inf_arch_gradient_stops_before_alpha_moves(make_cfg, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    original = SearchModule.on_train_start

    def poison_alpha_grad(self: SearchModule) -> None:
        self.net.alpha.register_hook(lambda g: g * float("inf"))
        if original is not None:
            original(self)

    monkeypatch.setattr(SearchModule, "on_train_start", poison_alpha_grad)
    with pytest.raises(NonFiniteError, match="arch gradient is (inf|nan) at epoch 0"):
        run_cell_search(make_cfg(*TWO_EPOCHS, out=out))
    _finite_alpha(out / "checkpoints" / "nonfinite.ckpt")
    assert not (out / "genotype.json").exists()  # no epoch finished: no genotype rather than a bad one


def test_non_finite_alpha_after_a_step_is_rolled_back(make_cfg, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # an infinite arch lr turns alpha into +-inf/NaN at the first arch step while the loss is finite
    with pytest.raises(NonFiniteError, match=r"alpha/beta\| after the arch step is (inf|nan)"):
        run(make_cfg(*TWO_EPOCHS, "search.arch_lr=inf", out=out))
    alpha = _finite_alpha(out / "checkpoints" / "nonfinite.ckpt")
    assert not (out / "genotype.json").exists()
    result = run(make_cfg(*TWO_EPOCHS, "search.arch_lr=inf", "search.skip_nonfinite=true", out=tmp_path / "skip"))
    assert result["epochs"] == 2
    # every arch step was rolled back, so alpha is still its initial value
    assert torch.equal(_finite_alpha(tmp_path / "skip" / "checkpoints" / "last.ckpt"), alpha)
    Genotype.load(tmp_path / "skip" / "genotype.json")


def test_nan_training_loss_keeps_the_last_good_checkpoint(
    make_cfg, tmp_path: Path, monkeypatch, searched_genotype_file: Path
) -> None:
    out = tmp_path / "run"
    from rspnet.lit import seg_module

    original = seg_module.seg_loss
    epoch = {"now": 0}
    monkeypatch.setattr(
        SegModule, "on_train_epoch_start", lambda self: epoch.update(now=self.current_epoch), raising=False
    )
    monkeypatch.setattr(
        seg_module, "seg_loss", lambda *a, **k: original(*a, **k) * (float("nan") if epoch["now"] >= 1 else 1.0)
    )
    with pytest.raises(NonFiniteError, match="training loss is nan at epoch 1"):
        run_train(make_cfg(*TRAIN, "trainer.max_epochs=2", f"genotype={searched_genotype_file}", out=out))
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


@pytest.mark.slow
def test_cli_reports_non_finite_alpha_in_one_line(cli, tmp_path: Path) -> None:
    proc = cli(*CELL, "trainer.max_epochs=1", "search.arch_lr=inf", f"paths.output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert len(errors) == 1 and "search.skip_nonfinite=true" in errors[0]
    assert "Traceback" not in proc.stderr
