"""DDP jobs of a local Hydra multirun: each job runs as its own `rspnet` process (docs/scaling.md).

Lightning's `ddp` (and every strategy that re-launches) starts ranks 1..N-1 by re-running the
command line; under `-m` that command is the whole sweep. So a sweep job whose trainer re-launches
runs its stage in a child process started with that job's own overrides, in RUN mode, in the job's
folder: the command a user would type to run that one job. Lightning re-launches *that* command for
the other ranks, exactly as in a single run, so the one-rank-fault handling (`ranks_fail_together`)
and the signal guard of single runs apply unchanged, and the sweep process itself never joins a
process group (no port, environment or process-group state leaks into the next job).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rspnet.errors import RSPNetError, StoppedError
from rspnet.utils.lifecycle import stop_on_signals
from rspnet.utils.runtime import launch_rank

OBJECTIVE_ENV = "RSPNET_OBJECTIVE_FILE"  # where the job's process writes the value the sweeper optimises
ERROR_PREFIX = "rspnet: error: "
# Hydra overrides that belong to the sweep; the job's own process is one run in the job's folder
SWEEP_ONLY = ("hydra.mode", "hydra.sweep", "hydra.sweeper", "hydra.launcher", "hydra.run", "hydra.output_subdir")


def _key(override: str) -> str:
    """`hydra.sweep.dir` of `hydra.sweep.dir=x`, `hydra.launcher` of `hydra/launcher=slurm`, `+a=1` -> `a`."""
    return override.split("=", 1)[0].lstrip("+~").replace("/", ".")


def _sweep_only(override: str) -> bool:
    key = _key(override)
    return any(key == k or key.startswith(k + ".") for k in SWEEP_ONLY)


def job_command(
    task: Iterable[str], hydra_overrides: Iterable[str], out: str, config_name: str | None, config_dirs: Iterable[str]
) -> list[str]:
    """`python -m rspnet.cli ...` running one sweep job alone: its overrides, RUN mode, its folder, no `.hydra`.

    `task` / `hydra_overrides` are the job's `hydra.overrides.task` / `.hydra`; `config_dirs` the
    `--config-dir`s the sweep was given. `hydra.output_subdir=null`: the sweep wrote the job's
    `.hydra` folder already, and Lightning's extra ranks must not write it either.
    """
    cmd = [sys.executable, "-m", "rspnet.cli"]
    for path in config_dirs:
        cmd += ["--config-dir", path]
    if config_name:
        cmd += ["--config-name", config_name]
    cmd += [o for o in hydra_overrides if not _sweep_only(o)]
    cmd += list(task)
    quoted = '"' + out.replace("\\", "\\\\").replace('"', '\\"') + '"'  # Hydra's quoted-string syntax
    return [*cmd, "hydra.mode=RUN", f"hydra.run.dir={quoted}", "hydra.output_subdir=null"]


def command_of_job(hydra_cfg: Any) -> list[str]:
    """`job_command` for the running multirun job, from its Hydra config (`HydraConfig.get()`)."""
    dirs = [
        s.path if s.schema == "file" else f"{s.schema}://{s.path}"
        for s in hydra_cfg.runtime.config_sources
        if s.provider == "command-line"
    ]
    return job_command(
        hydra_cfg.overrides.task,
        hydra_cfg.overrides.hydra,
        str(hydra_cfg.runtime.output_dir),
        hydra_cfg.job.config_name,
        dirs,
    )


def run_job_process(cmd: list[str], out: Path) -> float | None:
    """Run one sweep job as `cmd` and return its objective; its failure is one RSPNetError (the job fails).

    The child's stderr passes through, except its `rspnet: error:` lines, which become this job's
    error (Hydra records the job as failed and runs the next). SIGTERM/SIGINT to the sweep is passed
    to the job's process once (it runs in its own session, so a terminal's Ctrl-C reaches it only
    this way), the sweep waits for it to stop, then stops itself (StoppedError, exit 128 + signum).
    """
    fd, objective_file = tempfile.mkstemp(prefix="rspnet-objective-", suffix=".json")
    os.close(fd)
    env = {**os.environ, OBJECTIVE_ENV: objective_file}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    errors: list[str] = []
    try:
        try:
            with stop_on_signals(out):
                _relay(proc.stderr, errors)
                code = proc.wait()
        except StoppedError as e:
            proc.send_signal(e.signum)
            _relay(proc.stderr, errors)  # the job stops after its current batch, as a single run would
            proc.wait()
            raise
        return _outcome(code, errors, Path(objective_file))
    finally:
        if proc.poll() is None:  # an error in this process: leave no rank behind
            proc.kill()
            proc.wait()
        Path(objective_file).unlink(missing_ok=True)


def _relay(stream: Any, errors: list[str]) -> None:
    """Copy the child's stderr to ours until it closes, keeping its `rspnet: error:` lines in `errors`."""
    for line in stream:
        if line.startswith(ERROR_PREFIX):
            errors.append(line[len(ERROR_PREFIX) :].strip())
        else:
            sys.stderr.write(line)
            sys.stderr.flush()


def _outcome(code: int, errors: list[str], objective_file: Path) -> float | None:
    """The job's objective (exit 0), else its failure as one error: its first `rspnet: error:` line."""
    if code == 0:
        text = objective_file.read_text() if objective_file.is_file() else ""
        return json.loads(text).get("objective") if text.strip() else None
    if code > 128 and code - 128 in {int(s) for s in (signal.SIGTERM, signal.SIGINT)}:
        raise StoppedError(errors[0] if errors else f"stopped by {signal.Signals(code - 128).name}", code - 128)
    if errors:  # a rank's fault: "rank 1 failed: <message>" comes first, the other ranks' "stopped" lines after
        raise RSPNetError(errors[0])
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    raise RSPNetError(f"the job's DDP process {how} (its output is above)")


def report_objective(value: float | None) -> None:
    """In a sweep job's own process (`OBJECTIVE_ENV` set), rank 0 writes the objective for the sweep to read."""
    path = os.environ.get(OBJECTIVE_ENV)
    if path and launch_rank() == 0:
        Path(path).write_text(json.dumps({"objective": value}))
