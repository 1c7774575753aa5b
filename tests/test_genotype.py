"""genotype.json: round trip, and one clear ArtifactError naming the file for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rspnet.errors import ArtifactError
from rspnet.genotype import GENOTYPE_FORMAT, Genotype
from rspnet.search_space.ops import PRIMITIVES

WEIGHTS = [[0.1, 0.2, 0.5, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6]]


def _valid() -> dict:
    return Genotype.from_weights(WEIGHTS, rsp=True, search={"dataset": "synthetic", "epochs": 3, "seed": 0}).to_dict()


def test_round_trip_keeps_ops_weights_and_metadata(tmp_path: Path) -> None:
    path = Genotype.from_dict(_valid()).save(tmp_path / "genotype.json")
    g = Genotype.load(path)
    assert g.ops == ["conv_5x5", "conv_3x3", "skip_connect"]
    assert g.to_dict() == _valid() and json.loads(path.read_text())["format"] == GENOTYPE_FORMAT


def _broken(**changes) -> dict:
    d = _valid()
    for key, fn in changes.items():
        d[key] = fn(d[key])
    return d


def _set_op(edges: list, op: str) -> list:
    edges[1]["op"] = op
    return edges


@pytest.mark.parametrize(
    ("doc", "field", "hint"),
    [
        (_broken(edges=lambda e: _set_op(e, "sep_conv_7x7")), "edges[1].op", "unknown op 'sep_conv_7x7'"),
        (_broken(edges=lambda e: e[:2]), "edges", "3 edges, got 2"),
        (_broken(edges=lambda e: e + e[:1]), "edges", "3 edges, got 4"),
        (_broken(format=lambda f: "rspnet.genotype/0"), "format", "expected 'rspnet.genotype/1'"),
        (_broken(primitives=lambda p: p[::-1]), "primitives", "expected"),
        (_broken(rsp=lambda r: "yes"), "rsp", "expected bool"),
        ({k: v for k, v in _valid().items() if k != "edges"}, "edges", "missing"),
    ],
    ids=["unknown-op", "too-few-edges", "too-many-edges", "format", "primitives", "rsp-type", "no-edges"],
)
def test_invalid_genotype_names_the_file_and_field(tmp_path: Path, doc: dict, field: str, hint: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError) as err:
        Genotype.load(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg and hint in msg and "\n" not in msg


def test_bad_json_and_missing_file_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text('{"format": "rspnet.genotype/1", "edges": [')
    with pytest.raises(ArtifactError, match=f"{path}: not valid JSON"):
        Genotype.load(path)
    with pytest.raises(ArtifactError, match="not found"):
        Genotype.load(tmp_path / "missing.json")


def test_non_finite_architecture_weights_are_never_written() -> None:
    with pytest.raises(ArtifactError, match="not finite"):
        Genotype.from_weights([[float("nan")] * len(PRIMITIVES)] * 3, rsp=True)


def test_from_ops_is_the_one_hot_cell_and_refuses_unknown_ops() -> None:
    g = Genotype.from_ops(["conv_5x5", "conv_3x3", "skip_connect"], rsp=False)
    assert g.ops == ["conv_5x5", "conv_3x3", "skip_connect"] and not g.rsp
    one_hot = [[0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    assert g.to_dict() == Genotype.from_weights(one_hot, rsp=False).to_dict()
    with pytest.raises(ArtifactError, match="conv_7x7"):
        Genotype.from_ops(["conv_7x7", "conv_3x3", "skip_connect"])
    with pytest.raises(ArtifactError, match="one per edge"):
        Genotype.from_ops(["conv_3x3"])


def test_a_genotype_without_evidence_still_loads_and_a_chosen_op_round_trips(tmp_path: Path) -> None:
    # files written before search.select (no "select"/"evidence" in the search block) load unchanged
    old = Genotype.load(Path(__file__).resolve().parents[1] / "experiments" / "genotypes" / "camvid_tiny_s0.json")
    assert "evidence" not in old.search and len(old.ops) == 3
    # perturbation may choose an op that is not the alpha argmax: the op and the alphas both survive
    chosen = ["dw_conv_3x3", "conv_3x3", "skip_connect"]
    g = Genotype.from_weights(WEIGHTS, rsp=True, search={"select": "perturb", "evidence": {"x": [1.0]}}, ops=chosen)
    back = Genotype.load(g.save(tmp_path / "genotype.json"))
    assert back.ops == chosen and [list(e.weights) for e in back.edges] == WEIGHTS
    assert back.search == {"select": "perturb", "evidence": {"x": [1.0]}}
    with pytest.raises(ArtifactError, match="need 3 op names"):
        Genotype.from_weights(WEIGHTS, rsp=True, ops=["conv_3x3"])
