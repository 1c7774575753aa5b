"""The `net` config group: net=enet trains with the stage's recipe, its checkpoint evaluates, predicts, exports;
bad choices and bad entries are one line; a checkpoint may only name the allowlisted builders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from rspnet.composition import compose
from rspnet.errors import ArtifactError, ConfigError
from rspnet.lit.seg_module import SegModule
from rspnet.models.nets import RSPNET_SPEC, net_spec
from rspnet.stages.eval import run as run_eval
from rspnet.stages.train import run as run_train
from rspnet.utils.checkpoint import read_checkpoint
from tests.conftest import compose_cfg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def enet_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of `stage=train net=enet debug=tiny`: no genotype given."""
    out = tmp_path_factory.mktemp("enet")
    return run_train(compose_cfg(out, "stage=train", "net=enet")) | {"out": out}


def test_net_enet_trains_with_the_stage_and_records_the_family(enet_run: dict) -> None:
    info = json.loads((enet_run["out"] / "train.json").read_text())
    assert info["net"]["name"] == "enet" and info["net"]["class"] == "rspnet.models.enet.ENet"
    assert info["genotype"] is None and info["arch_provenance"] == {"genotype": None, "macro": None}
    assert info["selection"]["select"] == "holdout" and 0.0 <= info["best_val_miou"] <= 1.0  # same selection rule
    meta = read_checkpoint(info["selected_ckpt"])["rspnet"]
    assert meta["net"]["builder"] == "hydra.utils.instantiate" and meta["net"]["config"]["name"] == "enet"
    assert (
        meta["params"]
        == info["params"]
        == sum(p.numel() for p in SegModule.from_checkpoint(info["last_ckpt"])[0].parameters())
    )


def test_the_enet_checkpoint_evaluates_whatever_net_the_config_names(enet_run: dict, tmp_path: Path) -> None:
    """The network comes from the checkpoint: eval with the default net=rspnet config rebuilds ENet."""
    cfg = compose_cfg(tmp_path / "eval", "stage=eval", f"ckpt={enet_run['selected_ckpt']}")
    metrics = run_eval(cfg)
    assert metrics["net"] == "enet" and metrics["num_images"] == 4 and metrics["miou"] is not None


def test_the_enet_checkpoint_predicts_and_exports(enet_run: dict, tmp_path: Path) -> None:
    from rspnet.api import load_model
    from rspnet.segmenter import Segmenter
    from rspnet.stages.export import run as run_export

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # not a multiple of 8
    Image.fromarray(image).save(tmp_path / "a.png")
    assert Segmenter(load_model(enet_run["last_ckpt"])).predict(tmp_path / "a.png").shape == (37, 53)
    cfg = compose_cfg(tmp_path / "export", "stage=export", f"ckpt={enet_run['last_ckpt']}", "stage.size=[64,64]")
    assert run_export(cfg)["passed"]  # ONNX parity at an odd size: padding and unpooling export dynamically


def test_an_unknown_net_is_hydras_error() -> None:
    with pytest.raises(ConfigError, match=r"net=nope.*Could not find 'net/nope'"):
        compose("net=nope")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("net._target_=rspnet.models.nope.Net", r"^net=enet: cannot load _target_ rspnet.models.nope.Net \("),
        ("+net.width=3", r"^net=enet: rspnet.models.enet.ENet rejects its arguments \(.*width"),
        ("~net._target_", r"^net: expected a mapping with a `_target_`"),
    ],
)
def test_a_bad_net_entry_is_one_line(tmp_path: Path, override: str, message: str) -> None:
    over = ["net=enet", override]
    with pytest.raises(ConfigError, match=message) as err:
        run_train(compose_cfg(tmp_path, "stage=train", *over))
    assert "\n" not in str(err.value)


def test_a_checkpoint_naming_another_builder_is_refused(enet_run: dict, tmp_path: Path) -> None:
    """A file cannot make rspnet call arbitrary code: only the allowlisted builders are rebuilt."""
    ckpt = read_checkpoint(enet_run["last_ckpt"])
    ckpt["rspnet"]["net"]["config"]["_target_"] = "os.system"
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(ArtifactError, match=r"evil.ckpt: net.config names builder 'os.system', which rspnet does not"):
        SegModule.from_checkpoint(tmp_path / "evil.ckpt")


def test_the_rspnet_entry_is_the_default_and_the_spec_of_old_configs() -> None:
    assert OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "net" / "rspnet.yaml")) == RSPNET_SPEC
    assert net_spec(compose()) == RSPNET_SPEC == net_spec(OmegaConf.create({"model": {}}))


def test_the_monai_entry_builds_the_library_unet(tmp_path: Path) -> None:
    from rspnet.models.nets import build_net

    cfg = compose_cfg(tmp_path, "net=monai_unet")
    net = build_net(cfg, net_spec(cfg), 5)
    assert type(net).__module__.startswith("monai.") and net(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 32, 32)


def test_a_pipeline_of_a_net_without_a_search_trains_and_evaluates_it_only(tmp_path: Path, capsys) -> None:
    """`stage=pipeline net=enet` (one sweep alternating net=rspnet,enet): no searches, and the summary names ENet."""
    from rspnet.stages.pipeline import run as run_pipeline

    over = ("stage=pipeline", "net=enet", "stage.train_epochs=1", "trainer.limit_train_batches=2")
    summary = run_pipeline(compose_cfg(tmp_path, *over))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["eval", "train"]  # no cell/macro search
    assert summary["net"] == "enet" and set(summary["seconds"]) == {"train", "eval"}
    assert "genotype" not in summary["artifacts"] and summary["arch_provenance"] == {"genotype": None, "macro": None}
    assert summary["params"] == json.loads((tmp_path / "train" / "train.json").read_text())["params"] > 300_000
    assert "net=enet (no search)" in capsys.readouterr().out
