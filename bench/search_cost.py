"""Stage-1 (cell search) cost: search step time and peak memory, RSP on vs off.

    .venv/bin/python -m bench.search_cost [--model tiny] [--steps 8] [--write docs/benchmarks.md]

Each configuration runs in a fresh subprocess (so its peak RSS is its own): the real
`SearchModule` over `CellSupernet` in a Lightning Trainer, first-order steps (arch
forward/backward + step, weight forward/backward + clip + step) on random batches of the
dataset's crop size. Step time = median over the timed steps (after `--warmup` steps).
Memory: on CUDA the allocator peak; on CPU the growth of the process's peak RSS during
the fit (the weights and data were already resident before it), which is what the
activations, gradients and optimiser state cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rspnet.utils.io import atomic_write_text


def markers(model: str) -> tuple[str, str]:
    """Section markers in docs/benchmarks.md, one section per model preset."""
    return f"<!-- bench:search_cost:{model}:start -->", f"<!-- bench:search_cost:{model}:end -->"

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(model: str, rsp: str, steps: int, warmup: int, device: str, batch: int | None, crop: list[int] | None) -> dict[str, Any]:
    """Time `steps` search steps of one configuration in this process."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict
    from pytorch_lightning.utilities import CombinedLoader
    from torch.utils.data import DataLoader, TensorDataset

    import rspnet.cli  # noqa: F401  (registers the config resolver)
    from rspnet.lit.search_module import SearchModule
    from rspnet.models.supernet import CellSupernet

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", f"model={model}", f"rsp={rsp}"])
    out = tempfile.mkdtemp(prefix="search_cost_")
    with open_dict(cfg):
        cfg.paths.output_dir = out
    batch = batch or int(cfg.dataset.batch_size)
    h, w = crop or list(cfg.dataset.crop_size)
    classes = int(cfg.dataset.num_classes)
    pl.seed_everything(0, verbose=False)
    net = CellSupernet.from_cfg(cfg, classes)
    module = SearchModule(net, cfg)
    n = batch * (steps + warmup)
    data = TensorDataset(torch.randn(n, 3, h, w), torch.randint(0, classes, (n, h, w)))
    loader = lambda: DataLoader(data, batch_size=batch)  # noqa: E731
    times: list[tuple[float, float]] = []  # (wall, process CPU) seconds per step

    class Timer(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, *args: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - self.t0, time.process_time() - self.c0))

    precision = "16-mixed" if device == "cuda" else "32-true"
    trainer = pl.Trainer(
        accelerator=device, devices=1, max_epochs=1, precision=precision, logger=False, callbacks=[Timer()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    base = _rss_mib()
    trainer.fit(module, CombinedLoader({"weight": loader(), "arch": loader()}, "max_size_cycle"))
    timed = times[warmup:]
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mib() - base
    return {
        "rsp": rsp, "model": model, "batch": batch, "crop": [h, w], "steps": len(timed),
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "step_s": statistics.median(t for t, _ in timed), "cpu_s": statistics.median(c for _, c in timed),
        "memory_mib": memory,
    }


def run_config(rsp: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, "-m", "bench.search_cost", "--worker", "--rsp", rsp, "--model", args.model,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device, "--threads", str(args.threads)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.crop:
        cmd += ["--crop", *map(str, args.crop)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"worker rsp={rsp} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def table(rows: list[dict[str, Any]], device: str) -> str:
    """Markdown table: one row per RSP setting plus the on/off ratio."""
    mem = "peak CUDA memory (MiB)" if device == "cuda" else "peak RSS growth (MiB)"
    keys = ("params_m", "step_s", "cpu_s", "memory_mib")
    lines = [f"| RSP | params (M) | step wall (s) | step CPU (s) | {mem} |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rsp']} | {r['params_m']:.3f} | {r['step_s']:.3f} | {r['cpu_s']:.3f} | {r['memory_mib']:.1f} |")
    on, off = ({r["rsp"]: r for r in rows}[k] for k in ("on", "off"))
    lines.append("| on / off | " + " | ".join(f"{on[k] / max(off[k], 1e-9):.3f}" for k in keys) + " |")
    return "\n".join(lines)


def section(rows: list[dict[str, Any]], device: str, threads: int, command: str) -> str:
    """The docs/benchmarks.md section, between markers so a rerun replaces it."""
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {threads} thread(s))"
    r = rows[0]
    start, end = markers(r["model"])
    return "\n".join([
        start,
        f"## Cell search cost (stage 1): RSP on vs off, model={r['model']}",
        "",
        f"Device: {name}; torch {torch.__version__}; date {dt.date.today().isoformat()}.",
        f"Command: `{command}`",
        "",
        f"`SearchModule` over the stage-1 `CellSupernet` (model={r['model']}), batch {r['batch']} of",
        f"{r['crop'][0]}x{r['crop'][1]} random images, {r['steps']} timed first-order steps (arch step + weight",
        "step, as in training) after warm-up, each configuration in a fresh process; on/off runs are",
        "alternated and the faster run of each kept. Step times are medians of wall clock and of",
        "process CPU time (less disturbed by other jobs on a shared machine); memory on CPU is the",
        "growth of the process's peak RSS during the fit (activations, gradients, optimiser",
        "state), on CUDA the allocator peak.",
        "",
        table(rows, device),
        "",
        end,
    ])


def write_section(path: Path, text: str, start: str, end: str) -> Path:
    """Replace the section between `start` and `end` in `path` (or append it), atomically."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    return atomic_write_text(path, new)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure RSP on and off, print the table, optionally write docs/benchmarks.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="model preset (conf/model)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="default: dataset.batch_size")
    ap.add_argument("--crop", type=int, nargs=2, default=None, help="H W; default: dataset.crop_size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (alternating); the fastest is kept")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--write", type=Path, default=None, help="markdown file to put the section in")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rsp", default="on", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.model, args.rsp, args.steps, args.warmup, args.device, args.batch, args.crop)))
        return []
    # alternate on/off runs and keep each setting's fastest, so a busy moment on a shared
    # machine does not land on one setting only
    runs = [run_config(rsp, args) for _ in range(args.repeats) for rsp in ("on", "off")]
    rows = [min((r for r in runs if r["rsp"] == rsp), key=lambda r: r["cpu_s"]) for rsp in ("on", "off")]
    print(table(rows, args.device))
    if args.write:
        command = "python -m bench.search_cost " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        write_section(args.write, section(rows, args.device, args.threads, command.strip()), *markers(args.model))
        print(f"wrote {args.write}")
    return rows


if __name__ == "__main__":
    main()
