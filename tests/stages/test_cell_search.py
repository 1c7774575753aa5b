"""`stage=cell_search` end to end on synthetic data: artifacts, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype
from rspnet.lit.search_module import SearchModule
from rspnet.stages import run_stage as run
from rspnet.stages.cell_search import run as run_cell_search
from rspnet.utils import loggers

TINY = ("stage=cell_search", "debug=tiny", "model=micro")


def test_fast_dev_run_writes_genotype_and_cell_picture(make_cfg, tmp_path: Path) -> None:
    out = tmp_path / "search"
    result = run_cell_search(make_cfg(*TINY, "trainer.fast_dev_run=true", out=out))
    genotype = Genotype.load(out / "genotype.json")
    assert len(genotype.ops) == 3 and genotype.rsp is True
    assert {k: genotype.search[k] for k in ("dataset", "epochs", "seed")} == {
        "dataset": "synthetic",
        "epochs": 1,
        "seed": 0,
    }
    # provenance and the search budget are recorded; alpha entropy is normalised to [0, 1]
    assert genotype.provenance == "searched" and genotype.search["arch_optim"] == "sgd"
    entropy = genotype.search["alpha_entropy"]
    assert len(entropy["per_edge"]) == 3 and 0.99 < entropy["mean"] <= 1.0  # one tiny step: still ~uniform
    assert json.loads((out / "genotype.json").read_text())["format"] == "rspnet.genotype/1"
    for picture in ("cell.png", "alpha.png", "alpha_evolution.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (snapshot,) = json.loads((out / "arch_history.json").read_text())["epochs"]  # softmax(alpha) per epoch
    assert snapshot["epoch"] == 1 and len(snapshot["alpha"]) == 3
    assert all(sum(ops.values()) == pytest.approx(1.0, abs=1e-5) for ops in snapshot["alpha"].values())
    assert result["genotype"] == str(out / "genotype.json")
    assert 0.0 <= result["select/miou"] <= 1.0


def test_epoch_logs_select_miou_alpha_and_heatmap(make_cfg, tmp_path: Path, monkeypatch) -> None:
    images: list[tuple[str, np.ndarray]] = []
    monkeypatch.setattr(loggers, "log_image", lambda logger, key, image, step=None: images.append((key, image)))
    out = tmp_path / "search"
    limits = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1")
    run_cell_search(make_cfg(*TINY, *limits, "logger=csv", out=out))
    logged = (out / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "select/miou" in logged and "arch/alpha/0-1/conv_3x3" in logged and "arch/alpha_entropy" in logged
    [(key, image)] = images  # the alpha heatmap, once per epoch
    assert key == "arch/alpha_heatmap" and image.dtype == np.uint8 and image.shape[-1] == 3
    assert (out / "checkpoints" / "last.ckpt").is_file()


def _weights(out: Path) -> list[float]:
    return [w for e in Genotype.load(out / "genotype.json").edges for w in e.weights]


def _state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _kill_at_epoch(epoch: int):
    def on_train_epoch_start(self: SearchModule) -> None:
        if self.current_epoch == epoch:
            raise RuntimeError("killed")

    return on_train_epoch_start


@pytest.mark.slow
def test_resume_from_last_checkpoint_gives_the_uninterrupted_genotype(make_cfg, tmp_path: Path, monkeypatch) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = (*TINY, "trainer.max_epochs=2", "trainer.deterministic=true")
    # run_stage seeds like the CLI does, so both runs start from the same weights
    run(make_cfg(*args, out=full))
    with monkeypatch.context() as m:
        m.setattr(SearchModule, "on_train_epoch_start", _kill_at_epoch(1))
        with pytest.raises(RuntimeError, match="killed"):
            run(make_cfg(*args, out=cut))
    ckpt = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 0 and "net.alpha" in ckpt["state_dict"] and len(ckpt["optimizer_states"]) == 2
    assert ckpt["SegDataModule"]["search_split"]["num_train"] == 8
    result = run(make_cfg(*args, "ckpt_path=last", out=cut))
    assert result["epochs"] == 2
    assert _weights(cut) == pytest.approx(_weights(full), abs=1e-7)
    resumed, uninterrupted = _state(cut), _state(full)
    differ = [k for k, v in uninterrupted.items() if not torch.allclose(resumed[k].float(), v.float(), atol=1e-6)]
    assert not differ


def test_resume_without_a_checkpoint_starts_fresh(make_cfg, tmp_path: Path) -> None:
    """`ckpt_path=last` on a fresh dir starts the run (a requeued job passes it every time)."""
    out = tmp_path / "empty"
    limits = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1")
    result = run_cell_search(make_cfg(*TINY, *limits, "ckpt_path=last", out=out))
    assert result["epochs"] == 1 and Genotype.load(out / "genotype.json").complete
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "checkpoints" / "last.ckpt").is_symlink()


def test_second_order_under_ddp_is_refused_before_any_process_starts(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.second_order=true runs on one device only"):
        run_cell_search(make_cfg(*TINY, "trainer=ddp_sim", "search.second_order=true", out=tmp_path / "so"))
