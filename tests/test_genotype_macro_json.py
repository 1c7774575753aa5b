"""macro.json validation (SPEC §3): bad files give one clear line naming the file and field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rspnet.errors import ArtifactError
from rspnet.genotype import MacroArch


def _valid() -> dict[str, Any]:
    nodes = []
    for layer in (1, 2):
        for scale in (4, 8):
            inputs = [{"layer": 0, "scale": 4, "score": 0.6}]
            if layer == 2:
                inputs.append({"layer": 1, "scale": scale, "score": 0.3})
            nodes.append({"layer": layer, "scale": scale, "inputs": inputs})
    return {"format": "rspnet.macro/1", "layers": 2, "scales": [4, 8], "top_k": 2, "nodes": nodes}


def _write(tmp_path: Path, d: dict[str, Any]) -> Path:
    path = tmp_path / "macro.json"
    path.write_text(json.dumps(d))
    return path


def test_valid_file_round_trips(tmp_path: Path) -> None:
    macro = MacroArch.load(_write(tmp_path, _valid()))
    assert macro.node(2, 8).inputs[1].layer == 1
    macro.save(tmp_path / "again.json")
    assert MacroArch.load(tmp_path / "again.json").to_dict() == macro.to_dict()


def _broken(edit) -> dict[str, Any]:  # noqa: ANN001
    d = copy.deepcopy(_valid())
    edit(d)
    return d


CASES = {
    "same_layer": (
        lambda d: d["nodes"][3]["inputs"].__setitem__(1, {"layer": 2, "scale": 4, "score": 0.1}),
        r"nodes\[3\]\.inputs\[1\]\.layer",
        "earlier layers",
    ),
    "later_layer": (
        lambda d: d["nodes"][0]["inputs"].__setitem__(0, {"layer": 2, "scale": 8, "score": 0.1}),
        r"nodes\[0\]\.inputs\[0\]\.layer",
        "earlier layers",
    ),
    "unknown_input_scale": (
        lambda d: d["nodes"][2]["inputs"][1].__setitem__("scale", 16),
        r"nodes\[2\]\.inputs\[1\]\.scale",
        "not a node",
    ),
    "stem_at_wrong_scale": (
        lambda d: d["nodes"][0]["inputs"][0].__setitem__("scale", 8),
        r"nodes\[0\]\.inputs\[0\]\.scale",
        "stem",
    ),
    "unknown_node_scale": (lambda d: d["nodes"][1].__setitem__("scale", 16), r"nodes\[1\]\.scale", "unknown scale"),
    "bad_scales": (lambda d: d.__setitem__("scales", [4, 12]), "'scales'", "subset"),
    "too_many_inputs": (lambda d: d.__setitem__("top_k", 1), r"nodes\[2\]\.inputs", "top_k=1"),
    "top_k_zero": (lambda d: d.__setitem__("top_k", 0), "'top_k'", ">= 1"),
    "top_k_string": (lambda d: d.__setitem__("top_k", "2"), "'top_k'", "expected int"),
    "bad_format": (lambda d: d.__setitem__("format", "rspnet.macro/0"), "'format'", "rspnet.macro/1"),
    "missing_format": (lambda d: d.pop("format"), "'format'", "missing"),
    "missing_node": (lambda d: d["nodes"].pop(), "'nodes'", "missing nodes"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_files_are_rejected_with_one_clear_line(tmp_path: Path, case: str) -> None:
    edit, field, hint = CASES[case]
    path = _write(tmp_path, _broken(edit))
    with pytest.raises(ArtifactError) as err:
        MacroArch.load(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert re.search(field, msg), msg
    assert hint in msg, msg


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "macro.json"
    path.write_text("{nodes: ")
    with pytest.raises(ArtifactError, match="macro.json: not valid JSON"):
        MacroArch.load(path)
