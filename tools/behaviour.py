"""Behaviour snapshot: do fixed-seed tiny runs of the real CLI still give the same artifacts?

    python tools/behaviour.py record [DIR]    # write DIR (default tools/behaviour_before/)
    python tools/behaviour.py compare [DIR]   # rerun the same commands, diff against DIR; exit 1 on a difference

Runs, on the CPU with one torch thread and seed 0, `python -m rspnet.cli` subprocesses on the synthetic
dataset (a first- and a second-order cell search, a macro search, a training, an eval) and loads the
training checkpoint through `rspnet.load_model` for logits on a seeded input. Compared: genotype.json and
macro.json (ops, inputs, weights, search metadata), train.json/metrics.json metrics, the checkpoint's
state_dict keys and shapes, the logits; and the recorded checkpoint (weights + metadata, no optimiser) must
still load and give the recorded logits, so a key rename needs a loader for old checkpoints.
Run paths are normalised to `<run>`, so only what the code computes is compared.

Two tolerances (`Tolerance`): EXACT on the machine the snapshot was recorded on (same `platform()` fingerprint:
torch build, ATen ISA, CPU model and flags, oneDNN ISA cap), PORTABLE anywhere else (`--portable` forces it):
floats within a relative 1e-4, pixel-count metrics within 5e-3, and near-tie choices (decided by less than 1e-3)
allowed to flip, with what is built on them (later stages) reported as not compared. Emulate another CPU with
`ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 python tools/behaviour.py compare`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "tools" / "behaviour_before"
TOL = 1e-6  # artifact weights/scores and metrics
LOGITS_TOL = 1e-5  # max abs difference of the logits
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "offline"}

# The exact commands (COMMON, then the stage's overrides, which win); {run} is the run's temp dir. Never change them
# between a record and a compare: the snapshot is only meaningful for these.
COMMON = [
    "dataset=synthetic",
    "model=tiny",
    "trainer=cpu",
    "logger=none",
    "print_config=false",
    "seed=0",
    "threads.intra_op=1",
    "threads.inter_op=1",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "dataset.image_size=[32,64]",
    "dataset.crop_size=[32,64]",
    "dataset.num_train=8",
    "dataset.num_val=4",
    "dataset.num_workers=0",
    "model.base_width=4",
    "model.scales=[4,8,16]",
    "model.cells_per_node=1",
]
COMMANDS: dict[str, list[str]] = {
    "cell": [
        "stage=cell_search",
        "model.search_layers=2",
        "trainer.max_epochs=2",
        "search.arch_optim=adam",
        "search.arch_adam_lr=0.01",
    ],
    "cell_second_order": [
        "stage=cell_search",
        "model.search_layers=1",
        "trainer.max_epochs=1",
        "search.second_order=true",
    ],
    "macro": ["stage=macro_search", "model.layers=2", "trainer.max_epochs=2", "genotype={run}/cell/genotype.json"],
    "train": [
        "stage=train",
        "model.layers=2",
        "trainer.max_epochs=6",
        "train.lr=0.1",
        "train.select=last",
        "dataset.num_train=24",
        "genotype={run}/cell/genotype.json",
        "macro_arch={run}/macro/macro.json",
    ],
    "eval": ["stage=eval", "ckpt={run}/train/checkpoints/last.ckpt"],
}
TRAIN_KEYS = ("best_val_miou", "epochs", "global_step", "params", "class_weights", "arch_provenance")
EVAL_KEYS = ("miou", "macc", "pixel_acc", "iou_per_class", "acc_per_class", "split", "num_images", "arch_provenance")


def _cli(name: str, run: Path) -> None:
    """One `python -m rspnet.cli` stage run into run/name (the checkout's src/ first on the path)."""
    args = [*COMMON, *(a.format(run=run) for a in COMMANDS[name]), f"paths.output_dir={run / name}"]
    env = {
        **os.environ,
        **THREADS,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rspnet.cli", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"behaviour: {name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )


def _scrub(value: Any, run: Path) -> Any:
    """JSON with the run's temp dir replaced by `<run>` (paths are not behaviour)."""
    if isinstance(value, dict):
        return {k: _scrub(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, run) for v in value]
    if isinstance(value, str):
        return value.replace(str(run), "<run>")
    return value


def _read(path: Path, run: Path) -> Any:
    return _scrub(json.loads(path.read_text()), run)


def _logits(ckpt: Path) -> Any:
    """Logits of the checkpoint's net (through the public loader) on a seeded [1, 3, 16, 32] input."""
    import torch

    from rspnet import load_model

    torch.set_num_threads(1)
    model = load_model(ckpt)
    x = torch.randn(1, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).double().numpy()


def _strip_checkpoint(src: Path, dst: Path, run: Path) -> None:
    """The checkpoint's weights and rspnet metadata (no optimiser/loops): small enough to commit."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    keep = ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "rspnet")
    torch.save({k: _scrub(ckpt[k], run) if k == "rspnet" else ckpt[k] for k in keep if k in ckpt}, dst)


def snapshot(run: Path) -> tuple[dict[str, Any], Any]:
    """Run every command into `run`; the comparable summary and the logits array."""
    import torch

    for name in COMMANDS:
        _cli(name, run)
    ckpt = run / "train" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    train = _read(run / "train" / "train.json", run)
    metrics = _read(run / "eval" / "metrics.json", run)
    logits = _logits(ckpt)
    summary = {
        "genotype": _read(run / "cell" / "genotype.json", run),
        "genotype_second_order": _read(run / "cell_second_order" / "genotype.json", run),
        "macro": _read(run / "macro" / "macro.json", run),
        "train": {k: train.get(k) for k in TRAIN_KEYS},
        "eval": {k: metrics.get(k) for k in EVAL_KEYS},
        "state_dict": {k: list(v.shape) for k, v in state.items()},
        "logits": {"shape": list(logits.shape), "sum": float(logits.sum()), "abs_sum": float(abs(logits).sum())},
    }
    return summary, logits


@dataclass(frozen=True)
class Tolerance:
    """How close two snapshots must be.

    `rtol`: continuous floats (architecture weights, scores, entropies, logits) may differ by `rtol` times the larger
    magnitude (logits: times the array's largest |value|; their sums: times their abs-sum), never less than `atol`.
    `metric_atol`: metrics counted from argmax pixels (mIoU, accuracies), where a near-tie pixel can flip.
    `margin`: a discrete choice (a cell edge's op, a macro node's kept inputs) is compared exactly only where the
    recorded deciding margin is at least this; a flip below it is reported as a note, and everything built on the
    flipped choice (downstream stages) is not compared.
    """

    name: str
    rtol: float
    atol: float
    metric_atol: float
    margin: float


# the recording machine (same fingerprint): every float within 1e-6, logits within 1e-5 (as before), choices exact
EXACT = Tolerance("exact", rtol=0.0, atol=TOL, metric_atol=TOL, margin=0.0)
# any other machine: cross-CPU rounding measured ~2e-7 relative on the logits (AVX512 EPYC vs emulated AVX2/SSE4.1,
# docs/reliability.md); 1e-4 leaves 500x headroom and still fails a real change (~1e-3 relative)
PORTABLE = Tolerance("portable", rtol=1e-4, atol=TOL, metric_atol=5e-3, margin=1e-3)
METRIC_KEYS = {"miou", "macc", "pixel_acc", "best_val_miou"}
METRIC_PARENTS = {"iou_per_class", "acc_per_class"}
# what each compared section is built on: a flipped near-tie choice in one makes the later ones incomparable
DOWNSTREAM = {
    "genotype": ("macro", "train", "eval", "state_dict", "logits"),
    "macro": ("train", "eval", "state_dict", "logits"),
}


def _close(before: float, after: float, tol: float) -> bool:
    return (math.isnan(before) and math.isnan(after)) or abs(before - after) <= tol


def _float_tol(where: str, before: float, after: float, tol: Tolerance, scale: float | None) -> float:
    """The allowed difference for the float at `where`."""
    parts = where.split("/")
    if parts[-1] in METRIC_KEYS or (len(parts) > 1 and parts[-2] in METRIC_PARENTS):
        return max(tol.metric_atol, tol.atol)
    size = scale if scale is not None else max(abs(before), abs(after))
    return max(tol.atol, tol.rtol * size)


def diff(before: Any, after: Any, tol: Tolerance = EXACT, where: str = "", scale: float | None = None) -> list[str]:
    """Differences between two JSON-like trees: floats beyond the tolerance, anything else unequal."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = [f"{where}/{k}: only in before" for k in before.keys() - after.keys()]
        out += [f"{where}/{k}: only in after" for k in after.keys() - before.keys()]
        if where == "/logits" and isinstance(before.get("abs_sum"), float):
            scale = before["abs_sum"]  # a sum of logits is as precise as the sum of their magnitudes
        for k in sorted(before.keys() & after.keys()):
            out += diff(before[k], after[k], tol, f"{where}/{k}", scale)
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: length {len(before)} -> {len(after)}"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in diff(b, a, tol, f"{where}[{i}]", scale)]
    numbers = (int, float)
    if isinstance(before, numbers) and isinstance(after, numbers) and not isinstance(before, bool):
        if isinstance(before, float) or isinstance(after, float):
            same = _close(before, after, _float_tol(where, before, after, tol, scale))
        else:
            same = before == after
        return [] if same else [f"{where}: {before} -> {after}"]
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def _margin(scores: list[float]) -> float:
    """The gap that decided a choice among `scores` (largest minus second largest; inf for one candidate)."""
    top = sorted(scores, reverse=True)
    return top[0] - top[1] if len(top) > 1 else math.inf


def _undecided_edges(before: dict, after: dict, tol: Tolerance, name: str) -> list[str]:
    """Cell edges whose op differs but whose recorded margin is below `tol.margin`; `after` takes `before`'s op."""
    notes = []
    for i, (b, a) in enumerate(zip(before.get("edges", []), after.get("edges", []))):
        if b.get("op") != a.get("op") and _margin(b.get("weights", [])) < tol.margin:
            notes.append(
                f"/{name}/edges[{i}]/op: {b['op']!r} -> {a['op']!r} (recorded margin {_margin(b['weights']):.2g})"
            )
            a["op"] = b["op"]
    return notes


def _undecided_nodes(before: dict, after: dict, tol: Tolerance) -> list[str]:
    """Macro nodes whose kept inputs differ while every rank's score moved by less than `tol.margin`."""
    notes = []
    for i, (b, a) in enumerate(zip(before.get("nodes", []), after.get("nodes", []))):
        b_in, a_in = b.get("inputs", []), a.get("inputs", [])
        keys = [[(x.get("layer"), x.get("scale")) for x in ins] for ins in (b_in, a_in)]
        if keys[0] == keys[1] or len(b_in) != len(a_in):
            continue
        b_scores = [x.get("score", 0.0) for x in b_in]
        near = [abs(x - y) < tol.margin for x, y in zip(b_scores, (x.get("score", 0.0) for x in a_in))]
        ties = [abs(x - y) < tol.margin for x, y in zip(b_scores, b_scores[1:])] or [False]
        if all(near) and (set(keys[0]) != set(keys[1]) or any(ties)):
            notes.append(f"/macro/nodes[{i}]/inputs: {keys[0]} -> {keys[1]} (scores within {tol.margin:g})")
            for x, y in zip(a_in, b_in):
                x["layer"], x["scale"] = y.get("layer"), y.get("scale")
    return notes


def undecided(before: dict, after: dict, tol: Tolerance) -> tuple[list[str], set[str]]:
    """Near-tie flips (notes; `after` is edited to agree on them) and the sections built on a flipped choice."""
    if tol.margin <= 0:
        return [], set()
    skip: set[str] = set()
    notes = _undecided_edges(
        before.get("genotype_second_order", {}), after.get("genotype_second_order", {}), tol, "genotype_second_order"
    )
    for name, find in (
        ("genotype", lambda b, a: _undecided_edges(b, a, tol, "genotype")),
        ("macro", lambda b, a: _undecided_nodes(b, a, tol)),
    ):
        if name in skip:
            continue
        found = find(before.get(name, {}), after.get(name, {}))
        notes += found
        if found:
            skip.update(DOWNSTREAM[name])
    return notes, skip


def logits_diff(before: Any, after: Any, tol: Tolerance = EXACT, where: str = "logits") -> list[str]:
    """A shape change or a max abs difference above the tolerance (portable: rtol times the largest |logit|)."""
    if before.shape != after.shape:
        return [f"{where}: shape {list(before.shape)} -> {list(after.shape)}"]
    allowed = LOGITS_TOL if tol.rtol == 0 else max(tol.atol, tol.rtol * float(abs(before).max()))
    worst = float(abs(before - after).max())
    return [] if worst <= allowed else [f"{where}: max abs diff {worst:.3g} > {allowed:.3g}"]


def platform() -> dict[str, str]:
    """Everything that decides the float bits here: torch build, the ATen kernels' ISA, the CPU and its flags.

    The same `cpu_capability` is not enough (an AVX512 AMD EPYC and an AVX512 Intel Xeon differ in the last bits:
    oneDNN picks kernels by CPU model), so the CPU's model name and a hash of its flags are part of it, and so is
    `ONEDNN_MAX_CPU_ISA`, which caps oneDNN's kernels.
    """
    import hashlib
    import platform as py_platform

    import torch

    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())  # the first processor's entry
    model = info.get("model name") or py_platform.processor() or py_platform.machine()
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": model,
        "cpu_flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12],
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")),
    }


def same_platform(ref: Path = DEFAULT_DIR) -> bool:
    """True when `ref` was recorded on this platform fingerprint (so the exact comparison applies)."""
    path = ref / "platform.json"
    return path.is_file() and json.loads(path.read_text()) == platform()


def record(out: Path) -> None:
    """Write summary.json, platform.json, logits.npy and the stripped checkpoint to `out`."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rspnet-behaviour-") as tmp:
        run = Path(tmp)
        summary, logits = snapshot(run)
        _strip_checkpoint(run / "train" / "checkpoints" / "last.ckpt", out / "checkpoint.pt", run)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out / "platform.json").write_text(json.dumps(platform(), indent=1, sort_keys=True) + "\n")
    np.save(out / "logits.npy", logits.astype(np.float32))
    print(f"behaviour: recorded {out}")


def compare(ref: Path, tol: Tolerance | None = None) -> tuple[list[str], list[str]]:
    """Rerun the commands and diff against `ref` (exact on its platform, portable elsewhere); (problems, notes)."""
    import numpy as np

    if not (ref / "summary.json").is_file():
        raise SystemExit(
            f"behaviour: error: {ref}/summary.json not found; run `python tools/behaviour.py record {ref}` first"
        )
    tol = tol or (EXACT if same_platform(ref) else PORTABLE)
    before = json.loads((ref / "summary.json").read_text())
    logits_before = np.load(ref / "logits.npy").astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="rspnet-behaviour-") as tmp:
        after, logits_after = snapshot(Path(tmp))
    return check(
        before, json.loads(json.dumps(after)), logits_before, logits_after, _logits(ref / "checkpoint.pt"), tol
    )


def check(before: dict, after: dict, logits_before: Any, logits_after: Any, logits_recorded: Any, tol: Tolerance):
    """(problems, notes) of one comparison: near-tie flips noted, what is built on them skipped, the rest diffed."""
    notes, skip = undecided(before, after, tol)
    notes += [f"/{name}: not compared (built on a near-tie choice that flipped)" for name in sorted(skip)]
    problems = diff(
        {k: v for k, v in before.items() if k not in skip}, {k: v for k, v in after.items() if k not in skip}, tol
    )
    if "logits" not in skip:
        problems += logits_diff(logits_before, logits_after, tol)
    problems += logits_diff(logits_before, logits_recorded, tol, where="recorded checkpoint logits")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    """CLI: record | compare [DIR]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "compare"])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--portable", action="store_true", help="the cross-machine tolerances even on the recording one"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "record":
        record(args.dir)
        return 0
    tol = PORTABLE if args.portable or not same_platform(args.dir) else EXACT
    if tol is PORTABLE:
        print(
            f"behaviour: {args.dir} was recorded on another platform ({platform()} here): portable comparison "
            f"(floats within rtol {tol.rtol:g}, pixel metrics within {tol.metric_atol:g}, choices decided by less "
            f"than {tol.margin:g} may flip)"
        )
    problems, notes = compare(args.dir, tol)
    for line in notes:
        print(f"NOTE {line}")
    for line in problems:
        print(f"DIFF {line}")
    verdict = f"{len(problems)} difference(s)" if problems else "identical"
    print(f"behaviour: {verdict} ({tol.name}) vs {args.dir} ({time.perf_counter() - start:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))  # this checkout's rspnet for the in-process logits, like the subprocesses
    sys.exit(main())
