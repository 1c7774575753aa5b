"""stage=train: fast_dev_run, checkpoints and train.json, resume, init_ckpt."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, ConfigError
from rspnet.stages.train import run as run_train


def test_fast_dev_run_on_synthetic(tiny_cfg) -> None:
    cfg = tiny_cfg("stage=train", "trainer.fast_dev_run=true")
    result = run_train(cfg)
    assert "objective" in result and result["params"] > 0
    info = json.loads((Path(cfg.paths.output_dir) / "train.json").read_text())
    assert info["global_step"] == 1 and info["genotype"] == cfg.genotype


def test_genotype_is_required(make_cfg) -> None:
    with pytest.raises(ConfigError, match="genotype"):
        run_train(make_cfg("stage=train"))


def test_train_writes_best_last_and_train_json(trained: dict) -> None:
    out = trained["out"]
    info = json.loads((out / "train.json").read_text())
    assert info["best_ckpt"] and info["last_ckpt"] == str(out / "checkpoints" / "last.ckpt")
    assert 0.0 <= info["best_val_miou"] <= 1.0 and info["best_val_miou"] == trained["objective"]
    ckpt = torch.load(info["best_ckpt"], map_location="cpu", weights_only=True)
    meta = ckpt["rspnet"]
    assert meta["format"] == "rspnet.seg/2" and meta["num_classes"] == 19 and len(meta["classes"]) == 19
    assert meta["genotype"]["format"] == "rspnet.genotype/1" and meta["macro"]["layers"] == 2
    assert any(k.startswith("net.") for k in ckpt["state_dict"])


def test_resume_from_last_continues_the_epoch_count(trained: dict, tiny_cfg, tmp_path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(trained["out"], out)
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    result = run_train(tiny_cfg("stage=train", "ckpt_path=last", "trainer.max_epochs=2", out=out))
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # the second epoch continued the first one's counters instead of restarting at zero
    assert first["epoch"] == 0 and last["epoch"] >= 1 and result["epochs"] == 2
    assert last["global_step"] == result["global_step"] == 2 * first["global_step"]
    assert not list((out / "checkpoints").glob("last-v*.ckpt"))  # the moved run dir's last.ckpt was overwritten


def test_resume_without_a_last_checkpoint_starts_fresh(tiny_cfg) -> None:
    """`ckpt_path=last` with no checkpoint yet trains from scratch (set once for every submission of a job)."""
    cfg = tiny_cfg("stage=train", "ckpt_path=last", "trainer.max_epochs=1", "trainer.limit_val_batches=1")
    result = run_train(cfg)
    assert result["epochs"] == 1 and (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_init_ckpt_copies_the_weights(trained: dict, tiny_cfg) -> None:
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.stages.train import init_from_checkpoint, training_architecture
    from rspnet.utils.checkpoint import net_state, read_checkpoint

    cfg = tiny_cfg("stage=train")
    genotype, macro = training_architecture(cfg)
    module = build_seg_module(cfg, genotype, macro, 19)
    init_from_checkpoint(module, trained["best_ckpt"])
    saved = net_state(read_checkpoint(trained["best_ckpt"]))
    assert all(torch.equal(v, saved[k]) for k, v in module.net.state_dict().items())


def test_init_ckpt_from_another_preset_lists_the_mismatched_keys(trained: dict, tiny_cfg) -> None:
    cfg = tiny_cfg("stage=train", "model.base_width=16", f"train.init_ckpt={trained['best_ckpt']}")
    with pytest.raises(
        ArtifactError,
        match=r"train.init_ckpt=.*shape mismatch: .*stem\.layers\.0\.weight \[8, 3, 3, 3\] vs \[16, 3, 3, 3\]",
    ):
        run_train(cfg)


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tiny_cfg, tmp_path, monkeypatch) -> None:
    from rspnet.lit.seg_module import SegModule
    from rspnet.utils.runtime import seed_everything

    # 9 images, 1 held out: 2 batches of 4 per epoch
    args = ("stage=train", "trainer.max_epochs=2", "trainer.deterministic=true", "dataset.num_train=9")
    seed_everything(0)
    run_train(tiny_cfg(*args, out=tmp_path / "full"))

    def killed(self: SegModule) -> None:
        if self.current_epoch == 1:
            raise KeyError("killed")  # not a Lightning-handled interrupt: the process would die here

    monkeypatch.setattr(SegModule, "on_train_epoch_start", killed, raising=False)
    seed_everything(0)
    with pytest.raises(KeyError, match="killed"):
        run_train(tiny_cfg(*args, out=tmp_path / "part"))
    monkeypatch.undo()
    seed_everything(0)
    run_train(tiny_cfg(*args, "ckpt_path=last", out=tmp_path / "part"))
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    part = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert full["global_step"] == part["global_step"] == 4
    assert all(torch.equal(v, part["state_dict"][k]) for k, v in full["state_dict"].items())


def test_selection_is_recorded_and_per_class_iou_logged(trained: dict) -> None:
    out = trained["out"]
    info = json.loads((out / "train.json").read_text())
    sel = info["selection"]
    assert sel["select"] == "holdout" and sel["split"] == "holdout" and sel["holdout"]["images"] == 1
    assert info["selected_ckpt"] == info["best_ckpt"] and sel["selected_on"].startswith("held-out 0.1 of train")
    meta = torch.load(info["best_ckpt"], map_location="cpu", weights_only=True)["rspnet"]
    assert meta["selection"] == sel and meta["class_weights"] is None


def test_select_last_without_slice_and_select_val(tiny_cfg, tmp_path, caplog) -> None:
    import csv
    import logging

    out = tmp_path / "last"
    run_train(tiny_cfg("stage=train", "train.select=last", "train.holdout_fraction=0", out=out))
    info = json.loads((out / "train.json").read_text())
    assert info["best_ckpt"] is None and info["selected_ckpt"] == info["last_ckpt"] and info["best_val_miou"] is None
    assert info["selection"]["split"] is None and info["selection"]["selected_on"] == "none — last checkpoint"
    out = tmp_path / "val"
    with caplog.at_level(logging.INFO, logger="rspnet"):
        run_train(tiny_cfg("stage=train", "train.select=val", "logger=csv", "train.class_weights=auto", out=out))
    info = json.loads((out / "train.json").read_text())
    assert "selected on the reported split" in info["selection"]["selected_on"]
    assert info["class_weights"]["scheme"] == "median_freq" and len(info["class_weights"]["weights"]) == 19
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    assert any(r.get("val/iou/road") not in (None, "") for r in rows)  # per-class IoU logged every validation
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("select (val) epoch 0: mIoU")]
    assert len(lines) == 1 and " road " in lines[0] and "sky" in lines[0]


def test_resume_keeps_the_held_out_slice(trained: dict, tiny_cfg, tmp_path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(trained["out"], out)
    before = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    saved = before["SegDataModule"]["holdout"]
    run_train(tiny_cfg("stage=train", "ckpt_path=last", "trainer.max_epochs=2", "train.holdout_seed=5", out=out))
    after = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    info = json.loads((out / "train.json").read_text())
    assert after["SegDataModule"]["holdout"] == saved and info["selection"]["holdout"]["seed"] == 0


def test_selection_split_and_val_are_logged_under_their_own_names(tiny_cfg, tmp_path) -> None:
    """train.select=holdout: `select/*` is the held-out slice (it picks the checkpoint), `val/*` the val split."""
    import csv

    out = tmp_path / "holdout"
    t0 = time.perf_counter()
    run_train(tiny_cfg("stage=train", "trainer.max_epochs=2", "logger=csv", out=out))
    elapsed = time.perf_counter() - t0
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    select = [float(r["select/miou"]) for r in rows if r.get("select/miou")]
    val = [float(r["val/miou"]) for r in rows if r.get("val/miou")]
    assert len(select) == len(val) == 2 and any(r.get("val/iou/road") for r in rows)
    assert not any("dataloader_idx" in key for key in rows[0])
    info = json.loads((out / "train.json").read_text())
    assert info["best_val_miou"] == pytest.approx(max(select), abs=1e-6)  # selected on the slice
    best = torch.load(info["best_ckpt"], map_location="cpu", weights_only=False)
    (monitor,) = [v["monitor"] for k, v in best["callbacks"].items() if "ModelCheckpoint" in k and v.get("monitor")]
    assert monitor == "select/miou"
    rows = json.loads((out / "curves.json").read_text())["rows"]  # the learning curves, one row per epoch
    assert [r["epoch"] for r in rows] == [0, 1]
    assert [r["select/miou"] for r in rows] == pytest.approx(select, abs=1e-6)
    assert [r["val/miou"] for r in rows] == pytest.approx(val, abs=1e-6) and all("train/loss_epoch" in r for r in rows)
    walls = [r["epoch_wall_s"] for r in rows]  # each epoch's wall time, steps and validation (sizing reads it)
    assert all(w > 0 for w in walls) and sum(walls) < elapsed
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    off = tmp_path / "off"
    run_train(tiny_cfg("stage=train", "trainer.max_epochs=1", "logger=csv", "train.monitor_val=false", out=off))
    assert "val/miou" not in (off / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")


def test_a_train_run_keeps_the_checkpoints_the_checkpoint_group_asks_for(tiny_cfg, tmp_path: Path) -> None:
    from rspnet.stages.train import run as run_train

    result = run_train(tiny_cfg("stage=train", "checkpoint=every_epoch", "trainer.max_epochs=2"))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert names == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]  # save_top_k=-1: every epoch kept
    assert Path(result["best_ckpt"]).name in names[:2] and result["epochs"] == 2


def test_validating_never_moves_the_training_trajectory(tiny_cfg, tmp_path) -> None:
    """Each evaluation loader has its own generator: monitoring val beside the held-out slice (train.monitor_val)
    leaves the weights of every epoch bit-identical (a DataLoader iterator draws its base seed from the global RNG,
    which the training shuffle and augmentations use)."""
    from rspnet.stages import run_stage  # seeded, as the CLI runs a stage

    weights = []
    for monitor in ("true", "false"):
        out = tmp_path / monitor
        run_stage(tiny_cfg("stage=train", "trainer.max_epochs=2", f"train.monitor_val={monitor}", out=out))
        weights.append(
            torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        )
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("select", ["holdout", "val"])
def test_a_selecting_run_without_validation_is_one_error(tiny_cfg, select: str) -> None:
    """Validation off (trainer.limit_val_batches=0) with a selecting train.select: refused before anything is
    written (it would report its last checkpoint as selected and lose the held-out slice for nothing)."""
    cfg = tiny_cfg("stage=train", f"train.select={select}", "trainer.limit_val_batches=0")
    with pytest.raises(ConfigError, match=r"limit_val_batches=0 turns validation off; set train\.select=last"):
        run_train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_select_last_with_a_slice_says_the_slice_is_left_out(tiny_cfg) -> None:
    """train.select=last with a held-out slice (the study's recipe): no selection, and the record says the
    slice was not trained on, without claiming it was validated."""
    cfg = tiny_cfg("stage=train", "train.select=last", "trainer.limit_val_batches=0", "trainer.max_epochs=1")
    run_train(cfg)
    info = json.loads((Path(cfg.paths.output_dir) / "train.json").read_text())
    assert info["selected_ckpt"] == info["last_ckpt"] and info["best_ckpt"] is None
    assert info["selection"]["selected_on"].startswith("none — last checkpoint; left out of training: the held-out")
