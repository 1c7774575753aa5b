"""Shared benchmark helpers: device facts, per-config subprocesses, timing, peak memory, the doc.

Every configuration of a benchmark runs in a fresh interpreter (`run_worker`) so that its
peak RSS (CPU) or allocator peak (CUDA) is its own and one config's caches do not warm up
the next. Workers print one JSON line; the parent collects them into a markdown section of
docs/benchmarks.md, replaced in place on a rerun (`write_section`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from rspnet.utils.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"


# -- device facts --------------------------------------------------------------------------
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict[str, Any]:
    """CPU model, usable cores, torch version, GPU name (or None), 1-min load average, UTC time."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load": os.getloadavg()[0],
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def device_line(info: dict[str, Any] | None = None, threads: int | None = None) -> str:
    """One markdown line naming the machine, so every table says where it was measured."""
    i = info or device_info()
    gpu = i["gpu"] or "no GPU"
    thr = f", torch threads {threads}" if threads else ""
    return (f"Device: {i['cpu']} ({i['cores']} cores{thr}), {gpu}; torch {i['torch']}; "
            f"{i['date']}; load average {i['load']:.1f} at start.")


def cuda_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu' (the default of every benchmark's --device)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# -- memory and time ------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status in MiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux: `5` > /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (timings must include it); no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or growth of the process's peak RSS on CPU."""

    def __init__(self, device: str | torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = 0.0
        elif reset_peak_rss() and _status_mib("VmRSS") is not None:
            # peak counted from now: building the model may have peaked higher than the steps do
            self.base, self.field = _status_mib("VmRSS") or 0.0, "VmHWM"
        else:
            self.base, self.field = peak_rss_mib(), ""
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _status_mib(self.field) if self.field else None
            self.mib = (peak if peak is not None else peak_rss_mib()) - self.base


def time_calls(fn: Callable[[], Any], steps: int, warmup: int, device: str | torch.device = "cpu",
               clock: Callable[[], float] | None = None) -> list[float]:
    """Seconds per call of `fn` for `steps` calls after `warmup` untimed ones.

    Default clock: on CPU the process's CPU time (`time.process_time`; benchmarks run torch
    with 1 thread, so it equals wall time on an idle machine but does not count the time
    the process waits for a core that other users hold); on CUDA wall time after a sync.
    """
    clock = clock or (time.perf_counter if torch.device(device).type == "cuda" else time.process_time)
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = clock()
        fn()
        sync(device)
        times.append(clock() - t0)
    return times


def median(values: Sequence[float]) -> float:
    """Median (the statistic every table reports: robust to a neighbour's burst of load)."""
    return float(statistics.median(values))


# -- subprocess per configuration ------------------------------------------------------------
def run_worker(module: str, spec: dict[str, Any], timeout: float = 1800, inprocess: bool = False,
               src: Path | None = None) -> dict[str, Any]:
    """Run `python -m <module> --worker '<spec json>'` in a fresh interpreter; return its JSON line.

    `inprocess=True` (the `--quick` smoke runs) calls `<module>.worker(spec)` here instead:
    seconds instead of an interpreter start per config, but memory numbers are then shared.
    `src`: import `rspnet` from this folder instead of the installed tree (A/B of two versions).
    """
    if inprocess:
        import importlib

        return json.loads(json.dumps(importlib.import_module(module).worker(spec)))
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    paths = [str(src) if src else None, str(REPO), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{module} worker {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def worker_main(argv: Sequence[str], fn: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """If argv is `--worker <json>`: run `fn(spec)` with 1 torch thread by default, print JSON, return True."""
    if len(argv) < 2 or argv[0] != "--worker":
        return False
    spec = json.loads(argv[1])
    torch.set_num_threads(int(spec.get("threads", 1)))
    print(json.dumps(fn(spec)))
    return True


def compose_cfg(*overrides: str) -> Any:
    """The composed Hydra config (logger=none) with `overrides`, outside any Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import rspnet.cli  # noqa: F401  (registers the config resolver)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "print_config=false", *overrides])


# -- docs/benchmarks.md ------------------------------------------------------------------------
def markers(name: str) -> tuple[str, str]:
    """Start/end comments delimiting benchmark `name`'s section in the doc."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_section(path: Path, name: str, body: str) -> Path:
    """Put `body` between `name`'s markers in `path` (replacing an older run, else appending)."""
    start, end = markers(name)
    text = f"{start}\n{body.rstrip()}\n\n{end}"
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    return atomic_write_text(path, new)


def add_write_arg(ap: Any) -> None:
    """`--write [PATH]`: put the section in PATH (default docs/benchmarks.md); absent = print only."""
    ap.add_argument("--write", nargs="?", type=Path, const=DOC, default=None,
                    help=f"markdown file to put the section in (default {DOC})")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats are printed with 3 significant decimals."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The shell command that reproduces this run (for the doc)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m", module, *args]).strip()


# -- one bi-level search step (both search stages share it) ------------------------------------
def search_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, second_order: bool = False,
                lr: float = 0.025, amp: bool = False) -> Callable[[], None]:
    """A closure doing what `SearchModule.training_step` does per batch, without Lightning.

    Arch step (first-order, or DARTS' unrolled gradient via `rspnet.lit.unrolled`) on (x, y),
    then a weight step with norm clipping; SGD for both, as the paper's defaults. `amp`: bf16
    autocast on CUDA (no loss scaler needed, so second order works too).
    """
    import torch.nn.functional as F

    from rspnet.lit.unrolled import unrolled_arch_grads

    weights, arch = net.weight_parameters(), net.arch_parameters()
    w_opt = torch.optim.SGD(weights, lr=lr, momentum=0.95, weight_decay=5e-4)
    a_opt = torch.optim.SGD(arch, lr=0.005, weight_decay=1e-4)

    def loss_fn(inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(inp.float(), tgt, ignore_index=255)

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inp.device.type, dtype=torch.bfloat16, enabled=amp):
            return net(inp)

    def step() -> None:
        a_opt.zero_grad(set_to_none=True)
        if second_order:
            _, grads = unrolled_arch_grads(fwd,  # type: ignore[arg-type]  (it only calls net(x))
                                            loss_fn, weights, arch, (x, y), (x, y), lr, 5e-4)
            for p, g in zip(arch, grads):
                p.grad = g
        else:
            loss_fn(fwd(x), y).backward()
        a_opt.step()
        w_opt.zero_grad(set_to_none=True)
        loss_fn(fwd(x), y).backward()
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        w_opt.step()

    return step


def measure_search(net: torch.nn.Module, batch: int, size: Sequence[int], classes: int, steps: int, warmup: int,
                   second_order: bool = False, device: str = "cpu", amp: bool = False) -> dict[str, Any]:
    """Median step time (s) and peak memory (MiB) of bi-level search steps of `net` on random data."""
    torch.manual_seed(0)
    net = net.to(device)
    x = torch.randn(batch, 3, *size, device=device)
    y = torch.randint(0, classes, (batch, *size), device=device)
    step = search_step(net, x, y, second_order, amp=amp)
    with PeakMemory(device) as mem:
        times = time_calls(step, steps, warmup, device)
    return {"step_s": median(times), "times": times, "memory_mib": mem.mib,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6}
