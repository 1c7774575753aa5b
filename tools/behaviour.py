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


def diff(before: Any, after: Any, tol: float = TOL, where: str = "") -> list[str]:
    """Differences between two JSON-like trees: floats beyond `tol`, anything else unequal."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = [f"{where}/{k}: only in before" for k in before.keys() - after.keys()]
        out += [f"{where}/{k}: only in after" for k in after.keys() - before.keys()]
        for k in sorted(before.keys() & after.keys()):
            out += diff(before[k], after[k], tol, f"{where}/{k}")
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: length {len(before)} -> {len(after)}"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in diff(b, a, tol, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(before, numbers) and isinstance(after, numbers) and not isinstance(before, bool):
        if isinstance(before, float) or isinstance(after, float):
            same = (math.isnan(before) and math.isnan(after)) or abs(before - after) <= tol
        else:
            same = before == after
        return [] if same else [f"{where}: {before} -> {after}"]
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def logits_diff(before: Any, after: Any, tol: float = LOGITS_TOL, where: str = "logits") -> list[str]:
    """A shape change or a max abs difference above `tol`."""
    if before.shape != after.shape:
        return [f"{where}: shape {list(before.shape)} -> {list(after.shape)}"]
    worst = float(abs(before - after).max())
    return [] if worst <= tol else [f"{where}: max abs diff {worst:.3g} > {tol:g}"]


def platform() -> dict[str, str]:
    """What float results depend on: torch build and the CPU kernels it picks (AVX2 vs AVX512 differ in the last bits)."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def same_platform(ref: Path = DEFAULT_DIR) -> bool:
    """True when `ref` was recorded with this torch build and CPU capability (so bit-level equality is expected)."""
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


def compare(ref: Path) -> list[str]:
    """Rerun the commands and diff against `ref`; also load ref's checkpoint with this code."""
    import numpy as np

    if not (ref / "summary.json").is_file():
        raise SystemExit(
            f"behaviour: error: {ref}/summary.json not found; run `python tools/behaviour.py record {ref}` first"
        )
    before = json.loads((ref / "summary.json").read_text())
    logits_before = np.load(ref / "logits.npy").astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="rspnet-behaviour-") as tmp:
        after, logits_after = snapshot(Path(tmp))
    problems = diff(before, json.loads(json.dumps(after)))
    problems += logits_diff(logits_before, logits_after)
    problems += logits_diff(logits_before, _logits(ref / "checkpoint.pt"), where="recorded checkpoint logits")
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI: record | compare [DIR]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "compare"])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "record":
        record(args.dir)
        return 0
    if not same_platform(args.dir):
        print(
            f"behaviour: warning: {args.dir} was recorded on another platform ({platform()} here); "
            "float results may differ in the last bits — record a snapshot here before the change instead"
        )
    problems = compare(args.dir)
    for line in problems:
        print(f"DIFF {line}")
    verdict = f"{len(problems)} difference(s)" if problems else "identical"
    print(f"behaviour: {verdict} vs {args.dir} ({time.perf_counter() - start:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))  # this checkout's rspnet for the in-process logits, like the subprocesses
    sys.exit(main())
