"""stage=sample_arch: seeded uniform draws from the search space, parameter matching, provenance downstream."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.models.macro_supernet import candidate_inputs
from rspnet.search_space.ops import PRIMITIVES
from rspnet.stages.sample_arch import run as run_sample_arch
from rspnet.stages.sample_arch import sample_architecture, sample_genotype, sample_macro

BASE = ["stage=sample_arch", "dataset=synthetic", "model=tiny", "sample.pictures=false"]


def test_same_seed_same_architecture_other_seed_differs(make_cfg, tmp_path: Path) -> None:
    files = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        run_sample_arch(make_cfg(*BASE, f"seed={seed}", out=tmp_path / name))
        files.append(((tmp_path / name / "genotype.json").read_text(), (tmp_path / name / "macro.json").read_text()))
    assert files[0] == files[1] and files[0] != files[2]
    genotype, macro = Genotype.load(tmp_path / "a" / "genotype.json"), MacroArch.load(tmp_path / "a" / "macro.json")
    assert genotype.provenance == macro.provenance == "random"
    assert genotype.search["seed"] == macro.search["seed"] == 3
    assert json.loads((tmp_path / "a" / "sample.json").read_text())["params"] > 0


def test_macro_inputs_come_from_the_supernet_candidates_and_respect_lookback(make_cfg) -> None:
    cfg = make_cfg(*BASE, "model.layers=4", "macro.lookback=1")
    _, macro, _ = sample_architecture(cfg, seed=0)
    for node in macro.nodes:
        cands = candidate_inputs(node.layer, macro.scales, 1)
        srcs = [(i.layer, i.scale) for i in node.inputs]
        assert set(srcs) <= set(cands) and len(srcs) == min(2, len(cands)) == len(set(srcs))


def test_draws_are_roughly_uniform() -> None:
    rng = random.Random(0)
    n = 3000
    ops = Counter(op for _ in range(n) for op in sample_genotype(rng, True, {}).ops)
    expected = 3 * n / len(PRIMITIVES)
    chi2 = sum((ops[op] - expected) ** 2 / expected for op in PRIMITIVES)
    assert set(ops) == set(PRIMITIVES) and chi2 < 30  # 4 dof: p ~ 1e-5 at 30
    # macro: every candidate of a layer-3 node is picked about top_k / K of the time
    picks = Counter()
    for _ in range(n):
        node = sample_macro(rng, [4, 8, 16, 32], 3, None, 2, {}).node(3, 8)
        picks.update((i.layer, i.scale) for i in node.inputs)
    cands = candidate_inputs(3, [4, 8, 16, 32], None)
    expected = 2 * n / len(cands)
    assert set(picks) == set(cands)
    assert sum((picks[c] - expected) ** 2 / expected for c in cands) < 45  # 8 dof


def test_param_match_rejects_draws_outside_the_tolerance(make_cfg) -> None:
    cfg = make_cfg(*BASE, "model.layers=2")
    free = [sample_architecture(cfg, seed)[2]["params"] for seed in range(12)]
    target = sorted(free)[len(free) // 2]
    matched = make_cfg(*BASE, "model.layers=2", f"sample.param_match={target}", "sample.tolerance=0.05")
    for seed in range(4):
        _, _, info = sample_architecture(matched, seed)
        assert abs(info["params"] - target) <= 0.05 * target
        assert info["param_match"]["reference_params"] == target
    # some unmatched draws are far outside 5 %, so the matcher really had to reject
    assert any(abs(p - target) > 0.05 * target for p in free)
    impossible = make_cfg(*BASE, "sample.param_match=10", "sample.max_tries=5")
    with pytest.raises(ConfigError, match="no draw within"):
        sample_architecture(impossible, 0)


def test_param_match_reads_a_folder_of_artifacts(make_cfg, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    result = run_sample_arch(make_cfg(*BASE, "seed=1", out=ref))
    cfg = make_cfg(*BASE, f"sample.param_match={ref}", "sample.tolerance=0.2")
    _, _, info = sample_architecture(cfg, 7)
    assert info["param_match"]["reference_params"] == result["params"]
    with pytest.raises(ConfigError, match="sample.param_match"):
        sample_architecture(make_cfg(*BASE, f"sample.param_match={tmp_path / 'nothing'}"), 0)


def test_provenance_reaches_train_json_checkpoint_and_metrics(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.eval import run as run_eval
    from rspnet.stages.train import run as run_train

    arch = tmp_path / "arch"
    small = [
        "dataset=synthetic",
        "model=tiny",
        "model.layers=2",
        "dataset.num_train=4",
        "dataset.num_val=2",
        "dataset.image_size=[32,64]",
        "dataset.crop_size=[32,64]",
        "dataset.batch_size=2",
        "dataset.val_batch_size=2",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]
    run_sample_arch(make_cfg("stage=sample_arch", *small, "sample.pictures=false", out=arch))
    train = run_train(
        make_cfg(
            "stage=train",
            *small,
            f"genotype={arch / 'genotype.json'}",
            f"macro_arch={arch / 'macro.json'}",
            out=tmp_path / "train",
        )
    )
    expected = {"genotype": "random", "macro": "random"}
    assert json.loads((tmp_path / "train" / "train.json").read_text())["arch_provenance"] == expected
    ckpt = torch.load(train["last_ckpt"], map_location="cpu", weights_only=False)
    assert ckpt["rspnet"]["arch_provenance"] == expected
    run_eval(make_cfg("stage=eval", *small, f"ckpt={train['last_ckpt']}", out=tmp_path / "eval"))
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["arch_provenance"] == expected
