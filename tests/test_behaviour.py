"""tools/behaviour.py: the diff catches a changed artifact; `compare` reproduces the committed snapshot."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "behaviour.py"
spec = importlib.util.spec_from_file_location("behaviour", SCRIPT)
behaviour = importlib.util.module_from_spec(spec)
spec.loader.exec_module(behaviour)


def test_diff_flags_a_moved_weight_a_changed_op_and_a_renamed_key() -> None:
    before = json.loads((behaviour.DEFAULT_DIR / "summary.json").read_text())
    assert behaviour.diff(before, copy.deepcopy(before)) == []
    after = copy.deepcopy(before)
    after["genotype"]["edges"][0]["weights"][1] += 1e-7  # within the tolerance
    assert behaviour.diff(before, after) == []
    after["genotype"]["edges"][0]["weights"][1] += 1e-5
    after["macro"]["nodes"][0]["inputs"][0]["layer"] += 1
    after["eval"]["miou"] = before["eval"]["miou"] + 1e-4
    key = next(iter(after["state_dict"]))
    after["state_dict"]["renamed." + key] = after["state_dict"].pop(key)
    problems = behaviour.diff(before, after)
    assert len(problems) == 5
    assert any(p.startswith("/genotype/edges[0]/weights[1]:") for p in problems)
    assert any(p.startswith("/macro/nodes[0]/inputs[0]/layer:") for p in problems)
    assert any(p.startswith("/eval/miou:") for p in problems)
    assert f"/state_dict/{key}: only in before" in problems and f"/state_dict/renamed.{key}: only in after" in problems


def test_diff_keeps_types_and_lengths() -> None:
    assert behaviour.diff({"a": [1, 2]}, {"a": [1, 2, 3]}) == ["/a: length 2 -> 3"]
    assert behaviour.diff({"a": "sgd"}, {"a": "adam"}) == ["/a: 'sgd' -> 'adam'"]
    assert behaviour.diff({"a": None}, {"a": 0.0}) == ["/a: None -> 0.0"]
    assert behaviour.diff({"a": True}, {"a": False}) == ["/a: True -> False"]


def test_logits_diff_tolerance_and_shape() -> None:
    logits = np.load(behaviour.DEFAULT_DIR / "logits.npy").astype(np.float64)
    assert behaviour.logits_diff(logits, logits + 5e-6) == []
    assert behaviour.logits_diff(logits, logits + 1e-4) == ["logits: max abs diff 0.0001 > 1e-05"]
    assert behaviour.logits_diff(logits, logits[:, :1])[0].startswith("logits: shape")


@pytest.mark.slow
def test_compare_reproduces_the_committed_snapshot() -> None:
    if (
        not behaviour.same_platform()
    ):  # bit-level equality holds only for the torch build and CPU kernels it was recorded with
        pytest.skip("tools/behaviour_before was recorded with another torch build / CPU capability")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "compare"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "behaviour: identical" in proc.stdout


def test_same_platform_needs_the_recorded_torch_build_and_cpu_capability(tmp_path: Path) -> None:
    assert not behaviour.same_platform(tmp_path)  # nothing recorded
    (tmp_path / "platform.json").write_text(json.dumps(behaviour.platform()))
    assert behaviour.same_platform(tmp_path)
    (tmp_path / "platform.json").write_text(json.dumps(behaviour.platform() | {"cpu_capability": "AVX2"}))
    assert not behaviour.same_platform(tmp_path)
