"""Time `make demo` (experiment=demo: the whole pipeline on synthetic data) and record it.

    python -m bench.demo_run --write      # section "demo" in docs/benchmarks.md

Runs the same command as `make demo` in a fresh process (default torch threads, as a user
gets them) into a temporary folder, then reads its pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, add_write_arg, device_line, md_table, write_section


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides (default: none, exactly `make demo`)")
    add_write_arg(ap)
    args = ap.parse_args(argv)
    started = device_line()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "rspnet.cli", "experiment=demo", f"paths.output_dir={tmp}", "print_config=false",
               "trainer.enable_progress_bar=false", *args.overrides]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        summary = json.loads((Path(tmp) / "pipeline.json").read_text())
    rows = [[stage, secs] for stage, secs in summary["seconds"].items()] + [["total (process wall time)", round(wall, 1)]]
    command = " ".join(["python -m bench.demo_run", *args.overrides])
    body = (f"## `make demo` (experiment=demo)\n\n{started}\n\nCommand: `{command}` (runs `rspnet experiment=demo` "
            f"as `make demo` does, without the install step)\n\n{md_table(['stage', 'seconds'], rows)}\n\nFinal synthetic val mIoU: {100 * summary['miou']:.2f} % "
            f"(19 classes; chance ≈ 5 %), derived network {summary['params'] / 1e6:.3f} M params.")
    print(body)
    if args.write:
        write_section(args.write, "demo", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
