"""Shared benchmark helpers: device facts, per-config subprocesses, timing, peak memory, the doc.

Every configuration of a benchmark runs in a fresh interpreter (`run_worker`) so that its peak RSS
(CPU) or allocator peak (CUDA) is its own and one config's caches do not warm up the next. Workers
print one JSON line; the parent collects them into a markdown section of docs/benchmarks.md,
replaced in place on a rerun (`write_section`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from rspnet.utils.io import atomic_write_text
from rspnet.utils.threads import usable_cores

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"


def device_info() -> dict[str, Any]:
    """CPU model, usable cores, torch version, GPU name (or None), 1-min load average, UTC time."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cores = usable_cores()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = model[0] if model else platform.processor() or platform.machine()
    return {
        "cpu": cpu,
        "cores": cores,
        "torch": torch.__version__,
        "gpu": gpu,
        "load": os.getloadavg()[0],
        "date": date,
    }


def device_line(info: dict[str, Any] | None = None, threads: int | None = None) -> str:
    """One markdown line naming the machine, so every table says where it was measured."""
    i = info or device_info()
    thr = f", torch threads {threads}" if threads else ""
    return (
        f"Device: {i['cpu']} ({i['cores']} cores{thr}), {i['gpu'] or 'no GPU'}; torch {i['torch']}; "
        f"{i['date']}; load average {i['load']:.1f} at start."
    )


def cuda_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu' (the default of every benchmark's --device)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (timings must include it); no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _rss_mib(field: str) -> float:
    """`VmRSS`/`VmHWM` of /proc/self/status in MiB; off Linux the peak RSS so far (`getrusage`)."""
    try:
        line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or growth of the process's peak RSS on CPU."""

    def __init__(self, device: str | torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        try:  # Linux: reset the peak to the current RSS, so building the model does not count
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = _rss_mib("VmRSS")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.mib = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else _rss_mib("VmHWM") - self.base


def time_calls(
    fn: Callable[[], Any], steps: int, warmup: int, device: str | torch.device = "cpu"
) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per call of `fn` for `steps` calls after `warmup` untimed ones.

    Wall time is what a user waits for; CPU time (1 torch thread) is what a neighbour's load on a
    shared machine barely moves. CUDA work is synchronised inside each timed call.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append((time.perf_counter() - w0, time.process_time() - c0))
    return times


def median(values: Sequence[float]) -> float:
    """Median (the statistic every table reports: robust to a neighbour's burst of load)."""
    return float(statistics.median(values))


def run_worker(module: str, spec: dict[str, Any], timeout: float = 1800, inprocess: bool = False) -> dict[str, Any]:
    """Run `python -m <module> --worker '<spec json>'` in a fresh interpreter; return its JSON line.

    `inprocess=True` (the `--quick` smoke runs) calls `<module>.worker(spec)` here instead:
    seconds instead of an interpreter start per config, but memory numbers are then shared.
    """
    if inprocess:
        import importlib

        return json.loads(json.dumps(importlib.import_module(module).worker(spec)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )
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
    """`rspnet.composition.compose` with no logger and no printed config (what every benchmark builds from)."""
    from rspnet.composition import compose

    return compose("logger=none", "print_config=false", *overrides)


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


def section(title: str, module: str, argv: Sequence[str] | None, *text: str, threads: int | None = 1) -> str:
    """A section body: title, device line, the reproducing command, then `text` (paragraphs, tables)."""
    return "\n".join(
        [f"## {title}", "", device_line(threads=threads), f"Command: `{command_line(module, argv)}`", "", *text]
    )


def parser(doc: str, argv: Sequence[str] | None, worker: Callable[..., Any] | None = None) -> Any:
    """(parser with `--write`, argv); (None, argv) when argv was a `--worker` call, already run here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if worker is not None and worker_main(argv, worker):
        return None, argv
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_write_arg(ap)
    return ap, argv


def parse(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`ap.parse_args(argv)`, keeping `argv` for the section's command line."""
    args = ap.parse_args(argv)
    args.argv = argv
    return args


def add_write_arg(ap: Any) -> None:
    """`--write [PATH]`: put the section in PATH (default docs/benchmarks.md); absent = print only."""
    ap.add_argument("--write", nargs="?", type=Path, const=DOC, default=None, help="markdown file (default: the doc)")


def emit(text: str, out: Path | None, prog: str) -> None:
    """A page or table to `out` (its folder made; a one-line note printed), or to stdout when `out` is None."""
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"{prog}: {out}")


def md_table(header: str | Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (`header`: a list, or one 'a | b | c' string); floats are printed with 3 decimals."""
    cols = header.split(" | ") if isinstance(header, str) else list(header)

    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def publish(args: Any, name: str, title: str, module: str, *text: str, threads: int | None = 1) -> None:
    """Print the table (`text[-1]`); with `--write` also put section `name` (title, device, command, text) there."""
    print(text[-1])
    if args.write:
        write_section(args.write, name, section(title, module, args.argv, *text, threads=threads))


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The shell command that reproduces this run (for the doc), repo paths relative to the repo root."""
    args = [_shown(a) for a in (sys.argv[1:] if argv is None else argv)]
    return " ".join(["python -m", module, *(shlex.quote(a) if any(c.isspace() for c in a) else a for a in args)])


def _shown(arg: str) -> str:
    """`arg` with an absolute path inside the repo (or a `key=path` override of one) made relative."""
    key, sep, value = ("", "", arg) if arg.startswith("/") else arg.rpartition("=")
    path = Path(value)
    if path.is_absolute() and path.resolve().is_relative_to(REPO.resolve()):
        value = str(path.resolve().relative_to(REPO.resolve()))
    return f"{key}{sep}{value}"
