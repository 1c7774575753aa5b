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
sys.modules["behaviour"] = behaviour  # dataclasses look their module up there
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


def _perturbed(rel: float, seed: int = 0) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """The recorded summary and logits, and a copy whose logits carry a relative perturbation of size `rel`."""
    before = json.loads((behaviour.DEFAULT_DIR / "summary.json").read_text())
    logits = np.load(behaviour.DEFAULT_DIR / "logits.npy").astype(np.float64)
    noise = np.random.default_rng(seed).standard_normal(logits.shape)
    moved = logits * (1 + rel * noise)
    after = copy.deepcopy(before)
    after["logits"] = {"shape": list(moved.shape), "sum": float(moved.sum()), "abs_sum": float(abs(moved).sum())}
    return before, after, logits, moved


@pytest.mark.parametrize("rel, passes", [(1e-6, True), (1e-3, False)])
def test_portable_comparison_passes_cross_cpu_rounding_and_fails_a_real_change(rel: float, passes: bool) -> None:
    """Cross-CPU rounding (~1e-6 relative; measured ~2e-7 here under an emulated AVX2/SSE4.1 CPU) passes the
    portable comparison; a real change (~1e-3 relative) fails it, in the logits and in the sums of the summary."""
    before, after, logits, moved = _perturbed(rel)
    problems, notes = behaviour.check(before, after, logits, moved, moved, behaviour.PORTABLE)
    assert notes == []
    if passes:
        assert problems == []
    else:
        assert any(p.startswith("logits: max abs diff") for p in problems)
        assert any(p.startswith("recorded checkpoint logits") for p in problems)
    # the exact comparison (the recording machine) flags the same 1e-6 perturbation in the summed logits
    exact, _ = behaviour.check(before, after, logits, moved, moved, behaviour.EXACT)
    assert any(p.startswith("/logits/abs_sum") for p in exact)


def test_a_near_tie_op_may_flip_across_cpus_and_skips_what_is_built_on_it() -> None:
    before = json.loads((behaviour.DEFAULT_DIR / "summary.json").read_text())
    logits = np.load(behaviour.DEFAULT_DIR / "logits.npy").astype(np.float64)
    edges = before["genotype"]["edges"]
    margins = [behaviour._margin(e["weights"]) for e in edges]
    tie, clear = int(np.argmin(margins)), int(np.argmax(margins))
    assert margins[tie] < behaviour.PORTABLE.margin <= margins[clear]  # the snapshot has both kinds
    after = copy.deepcopy(before)
    after["genotype"]["edges"][tie]["op"] = "skip_connect" if edges[tie]["op"] != "skip_connect" else "conv_3x3"
    after["train"]["best_val_miou"] += 0.05  # a different architecture trains differently
    problems, notes = behaviour.check(before, after, logits, logits, logits, behaviour.PORTABLE)
    assert problems == [] and notes[0].startswith(f"/genotype/edges[{tie}]/op")
    assert "/train: not compared (built on a near-tie choice that flipped)" in notes
    # exact on the recording machine; and a decisive op never flips unnoticed
    assert behaviour.check(before, after, logits, logits, logits, behaviour.EXACT)[0]
    after = copy.deepcopy(before)
    after["genotype"]["edges"][clear]["op"] = "skip_connect" if edges[clear]["op"] != "skip_connect" else "conv_3x3"
    problems, notes = behaviour.check(before, after, logits, logits, logits, behaviour.PORTABLE)
    assert notes == [] and problems == [
        f"/genotype/edges[{clear}]/op: {edges[clear]['op']!r} -> {after['genotype']['edges'][clear]['op']!r}"
    ]


def test_near_tie_macro_inputs_may_swap_but_a_moved_score_is_a_difference() -> None:
    before = json.loads((behaviour.DEFAULT_DIR / "summary.json").read_text())
    logits = np.load(behaviour.DEFAULT_DIR / "logits.npy").astype(np.float64)
    node = next(i for i, n in enumerate(before["macro"]["nodes"]) if len(n["inputs"]) == 2)
    ins = before["macro"]["nodes"][node]["inputs"]
    after = copy.deepcopy(before)
    after["macro"]["nodes"][node]["inputs"][1].update(layer=ins[0]["layer"] - 1 if ins[0]["layer"] else 1, scale=4)
    problems, notes = behaviour.check(before, after, logits, logits, logits, behaviour.PORTABLE)
    assert problems == [] and notes[0].startswith(f"/macro/nodes[{node}]/inputs")
    after["macro"]["nodes"][node]["inputs"][1]["score"] += 0.01  # not a near tie any more
    problems, _ = behaviour.check(before, after, logits, logits, logits, behaviour.PORTABLE)
    assert any(p.startswith(f"/macro/nodes[{node}]/inputs[1]") for p in problems)


@pytest.mark.slow
def test_compare_reproduces_the_committed_snapshot_on_an_emulated_other_cpu() -> None:
    """The README's `make test` must pass on any x86 CPU: the real runs, on kernels capped to SSE4.1 (ATen and
    oneDNN), match the snapshot recorded on an AVX512 machine under the portable tolerances."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    }
    proc = subprocess.run([sys.executable, str(SCRIPT), "compare"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "behaviour: identical (portable)" in proc.stdout


def test_the_platform_fingerprint_holds_what_decides_the_bits(tmp_path: Path, monkeypatch) -> None:
    assert not behaviour.same_platform(tmp_path)  # nothing recorded
    (tmp_path / "platform.json").write_text(json.dumps(behaviour.platform()))
    assert behaviour.same_platform(tmp_path)
    for key, value in (("cpu_capability", "AVX2"), ("cpu", "Intel(R) Xeon(R)"), ("cpu_flags_sha1", "0")):
        (tmp_path / "platform.json").write_text(json.dumps(behaviour.platform() | {key: value}))
        assert not behaviour.same_platform(tmp_path), key
    (tmp_path / "platform.json").write_text(json.dumps(behaviour.platform()))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not behaviour.same_platform(tmp_path)
