"""Time `make demo` (experiment=demo: the whole pipeline on synthetic data) and record it.

    python -m bench.demo_run --write           # section "demo" in docs/benchmarks.md
    python -m bench.demo_run --busy --write    # idle vs beside a busy core: section "demo_busy"

Runs the same command as `make demo` in a fresh process (default thread policy, as a user
gets it) into a temporary folder, then reads its pipeline.json. With --busy it runs the demo
twice, idle and beside a CPU-bound `python -c "while True: pass"` process (bench.busy), and
reports wall time per stage for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench.busy import busy_loop
from bench.common import REPO, add_write_arg, device_line, md_table, write_section


def run_demo(overrides: list[str]) -> tuple[dict[str, Any], float]:
    """(pipeline.json, process wall seconds) of one `rspnet experiment=demo` run; exits on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "rspnet.cli", "experiment=demo", f"paths.output_dir={tmp}", "print_config=false",
               "trainer.enable_progress_bar=false", *overrides]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        return json.loads((Path(tmp) / "pipeline.json").read_text()), wall


def busy_body(args: argparse.Namespace, started: str, command: str) -> str:
    """Idle vs busy arms (idle first), wall seconds per stage and the ratio."""
    arms = {}
    for arm in ("idle", "busy"):
        with busy_loop(args.pin) if arm == "busy" else nullcontext():
            arms[arm] = run_demo(args.overrides)
    (idle, idle_wall), (busy, busy_wall) = arms["idle"], arms["busy"]
    rows = [[stage, f"{secs:.1f}", f"{busy['seconds'][stage]:.1f}", f"{busy['seconds'][stage] / max(secs, 1e-9):.2f}x"]
            for stage, secs in idle["seconds"].items()]
    rows.append(["total (process wall time)", f"{idle_wall:.1f}", f"{busy_wall:.1f}", f"**{busy_wall / idle_wall:.2f}x**"])
    pin = f"pinned to core {args.pin}" if args.pin is not None else "not pinned"
    return (f"## `make demo` beside a busy core\n\n{started}\n\nCommand: `{command}` (`rspnet experiment=demo` idle, "
            f"then beside one `python -c \"while True: pass\"` process, {pin})\n\n"
            f"{md_table(['stage', 'wall idle (s)', 'wall busy (s)', 'busy / idle'], rows)}\n\n"
            f"Final synthetic val mIoU: {100 * idle['miou']:.2f} % idle, {100 * busy['miou']:.2f} % busy.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides (default: none, exactly `make demo`)")
    ap.add_argument("--busy", action="store_true", help="run idle and beside a busy loop; report both")
    ap.add_argument("--pin", type=int, default=None, help="with --busy: pin the busy loop to this core")
    add_write_arg(ap)
    args = ap.parse_args(argv)
    started = device_line()
    command = " ".join(["python -m bench.demo_run", *(["--busy"] if args.busy else []),
                        *([f"--pin {args.pin}"] if args.pin is not None else []), *args.overrides])
    if args.busy:
        body = busy_body(args, started, command)
    else:
        summary, wall = run_demo(args.overrides)
        rows = [[stage, secs] for stage, secs in summary["seconds"].items()] + [["total (process wall time)", round(wall, 1)]]
        body = (f"## `make demo` (experiment=demo)\n\n{started}\n\nCommand: `{command}` (runs `rspnet experiment=demo` "
                f"as `make demo` does, without the install step)\n\n{md_table(['stage', 'seconds'], rows)}\n\nFinal synthetic val mIoU: {100 * summary['miou']:.2f} % "
                f"(19 classes; chance ≈ 5 %), derived network {summary['params'] / 1e6:.3f} M params.")
    print(body)
    if args.write:
        write_section(args.write, "demo_busy" if args.busy else "demo", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
