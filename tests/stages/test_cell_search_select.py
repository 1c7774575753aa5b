"""`search.select` through `stage=cell_search`: evidence in the artifacts, the scoring split, the known-op task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rspnet.data.known_op import RIGHT_OP, render
from rspnet.errors import ConfigError
from rspnet.genotype import Genotype
from rspnet.search_space.ops import PRIMITIVES
from rspnet.stages import run_stage as run

TINY = ("stage=cell_search", "debug=tiny", "model=micro")


def test_cli_perturb_writes_the_evidence_and_its_ops(rspnet_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = rspnet_cli(
        *TINY, "search.select=perturb", "trainer.fast_dev_run=true", f"paths.output_dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    genotype = Genotype.load(out / "genotype.json")
    search, ev = genotype.search, genotype.search["evidence"]
    assert search["select"] == ev["select"] == "perturb" and ev["scoring"]["split"] == "arch"
    assert set(ev["alpha"]) >= {"decisiveness", "split_half", "split_half_score", "half_scores"}
    assert set(ev["perturb"]) >= {"scores", "miou_drop", "decisiveness", "split_half", "half_scores", "ops"}
    assert genotype.ops == ev["perturb"]["ops"]  # the genotype holds the perturbation choice...
    assert all(sum(e.weights) == pytest.approx(1.0) for e in genotype.edges)  # ...and the softmax(alpha) weights
    result = json.loads((out / "search.json").read_text())
    assert result["select"] == "perturb" and result["ops"] == genotype.ops and "perturb" in result["evidence"]


def test_the_selection_rule_changes_the_readout_not_the_search(make_cfg, tmp_path: Path) -> None:
    outs = {s: tmp_path / s for s in ("argmax", "perturb")}
    for select, out in outs.items():
        run(make_cfg(*TINY, "trainer.fast_dev_run=true", f"search.select={select}", out=out))
    a, p = (Genotype.load(o / "genotype.json") for o in outs.values())
    assert [e.weights for e in a.edges] == [e.weights for e in p.edges]
    assert a.ops == [PRIMITIVES[int(np.argmax(e.weights))] for e in a.edges]
    assert a.search["select"] == "argmax" and "perturb" not in a.search["evidence"]
    assert a.search["evidence"]["alpha"]["split_half"]["rows"] == 3


def test_scoring_on_the_selection_slice_needs_one_and_never_uses_val(make_cfg, tmp_path: Path) -> None:
    args = (*TINY, "search.select=perturb", "search.perturb_split=select", "train.select=val")
    with pytest.raises(ConfigError, match="search.perturb_split=select scores on the held-out slice of train") as e:
        run(make_cfg(*args, out=tmp_path / "val"))
    assert "\n" not in str(e.value) and not (tmp_path / "val" / "genotype.json").exists()  # refused before the search
    result = run(make_cfg(*TINY, "search.select=perturb", "search.perturb_split=select", "trainer.fast_dev_run=true"))
    assert result["evidence"]["scoring"] == {"split": "select", "images": 1, "null": False}  # 10 % of 8 train images
    assert result["evidence"]["perturb"]["split_half"] is None  # one image has no second half (no NaN written)


def test_perturb_with_a_resource_target_is_one_line(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.select=perturb with search.target_params is not supported") as e:
        run(make_cfg(*TINY, "search.select=perturb", "search.target_params=100000", out=tmp_path / "t"))
    assert "\n" not in str(e.value) and not (tmp_path / "t" / "genotype.json").exists()


def test_known_op_labels_are_the_bits_at_the_offset() -> None:
    img, lab = render(0, "train", 3, (32, 32), (1, 2))
    bits = (img[::4, ::4, 0] == 255).astype(np.uint8)
    assert set(np.unique(img[::4, ::4, 0])) <= {0, 255} and (np.delete(img, np.s_[::4], 0) == 128).all()
    centre = lab[1::4, 1::4]
    assert (centre[:7, :6] == bits[1:, 2:]).all() and (centre[7] == 255).all() and (centre[:, 6:] == 255).all()
    assert (lab[0::4] == 255).all() and (lab[:, 3::4] == 255).all()  # only the blocks' centre 2x2 is labelled


@pytest.mark.slow
def test_known_op_task_perturbation_finds_the_right_op_and_the_null_does_not(rspnet_cli, tmp_path: Path) -> None:
    """The real stage=cell_search on the known-op task (experiments/known_op.py: 10/10 seeds vs 2/10 null)."""
    scores = {}
    for mode in ("real", "null"):
        out = tmp_path / mode
        args = ("experiment=known_op", "seed=0", f"search.null={str(mode == 'null').lower()}")
        proc = rspnet_cli(*args, f"paths.output_dir={out}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        genotype = Genotype.load(out / "genotype.json")
        perturb = genotype.search["evidence"]["perturb"]
        scores[mode] = perturb["scores"][1]  # edge 0->2
        if mode == "real":
            assert genotype.ops[1] == RIGHT_OP["op"] and perturb["split_half"]["spearman"] > 0.5
    c5 = PRIMITIVES.index(RIGHT_OP["op"])
    runner_up = max(v for j, v in enumerate(scores["real"]) if j != c5)
    assert scores["real"][c5] > runner_up + 0.02  # removing conv_5x5 hurts clearly most
    assert scores["null"][c5] < scores["real"][c5] / 2  # on null labels its removal carries no such signal
