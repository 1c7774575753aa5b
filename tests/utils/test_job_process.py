"""A local multirun's DDP job as its own process (rspnet.utils.job_process): its command, its outcome, signals.

Fast: the job's process is a stand-in `python -c` script here; the real CLI end to end is
`tests/test_cli_multirun.py::test_local_multirun_runs_each_ddp_job_once_with_its_own_ranks` (slow).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from rspnet.errors import RSPNetError, StoppedError
from rspnet.utils.job_process import OBJECTIVE_ENV, job_command, report_objective, run_job_process

pytestmark = pytest.mark.distributed


def test_job_command_is_the_job_alone_in_its_own_folder() -> None:
    task = ["experiment=rsp_ablation", "rsp=off", "+tag='a b'", "logger.tags=[x,y]", "paths.output_dir=sw"]
    hydra = [
        "hydra.mode=MULTIRUN",  # what -m adds
        "hydra.sweep.dir=elsewhere",
        "hydra/launcher=basic",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.params.rsp=off,on",
        "hydra.run.dir=old",
        "hydra.output_subdir=.hydra",
        "hydra.job.chdir=false",  # not the sweep's: kept
        "hydra/job_logging=disabled",
    ]
    out = 'sweep dir/0 "q"'
    cmd = job_command(task, hydra, out, "config", ["conf_extra"])
    assert cmd[:3] == [sys.executable, "-m", "rspnet.cli"]
    assert cmd[3:7] == ["--config-dir", "conf_extra", "--config-name", "config"]
    overrides = cmd[7:]
    assert overrides[:2] == ["hydra.job.chdir=false", "hydra/job_logging=disabled"]
    assert overrides[2:7] == task  # the job's own values, swept ones included, exactly as the sweep ran them
    assert "-m" not in cmd[3:] and "--multirun" not in cmd  # not a sweep
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    # one run (not a sweep, whatever the experiment's hydra.mode), in the job's folder, leaving its .hydra alone
    assert parsed["hydra.mode"] == "RUN" and parsed["hydra.run.dir"] == out and parsed["hydra.output_subdir"] is None
    assert parsed["tag"] == "a b" and parsed["logger.tags"] == ["x", "y"]
    assert not any(k.startswith(("hydra.sweep", "hydra/launcher", "hydra.launcher")) for k in parsed)


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_job_process_returns_the_objective_rank_zero_wrote(tmp_path: Path) -> None:
    write = f"import os, json; open(os.environ['{OBJECTIVE_ENV}'], 'w').write(json.dumps({{'objective': 0.25}}))"
    assert run_job_process(_child(write), tmp_path) == 0.25
    assert run_job_process(_child("pass"), tmp_path) is None  # a stage without an objective


def test_report_objective_is_written_by_rank_zero_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "objective.json"
    monkeypatch.setenv(OBJECTIVE_ENV, str(target))
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's re-launched rank
    report_objective(0.5)
    assert not target.exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    report_objective(0.5)
    assert json.loads(target.read_text()) == {"objective": 0.5}


def test_a_failed_job_is_one_error_with_its_first_rank_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    ranks = (
        "import sys; print('some warning', file=sys.stderr); "
        "print('rspnet: error: rank 1 failed: cannot write x.json', file=sys.stderr); "
        "print('rspnet: error: rank 0 stopped: rank 1 failed: cannot write x.json', file=sys.stderr); sys.exit(2)"
    )
    with pytest.raises(RSPNetError, match=r"^rank 1 failed: cannot write x.json$"):
        run_job_process(_child(ranks), tmp_path)
    err = capfd.readouterr().err
    assert "some warning" in err and "rspnet: error:" not in err  # the sweep prints the job's error once
    with pytest.raises(RSPNetError, match="killed by SIGKILL"):
        run_job_process(_child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), tmp_path)
    with pytest.raises(RSPNetError, match="exited with status 3"):
        run_job_process(_child("raise SystemExit(3)"), tmp_path)
    with pytest.raises(StoppedError, match="stopped by SIGTERM"):  # the job was signalled: the sweep stops too
        run_job_process(_child("raise SystemExit(143)"), tmp_path)


def test_a_signal_to_the_sweep_reaches_the_job_once_and_stops_the_sweep(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # the job's process records its pid and, like a rank, stops on SIGTERM with 143 after "its batch"
    job = (
        "import os, signal, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.2), sys.exit(143)))\n"
        "time.sleep(60)\n"
    )

    def signal_the_sweep() -> None:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=signal_the_sweep, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(StoppedError) as stopped:
        run_job_process(_child(job), tmp_path)
    assert stopped.value.signum == signal.SIGTERM and "before any checkpoint" in str(stopped.value)
    assert time.monotonic() - start < 20  # not the job's 60 s: it was told
    assert not psutil.pid_exists(int(pid_file.read_text()))  # and waited for: nothing left running
    assert signal.getsignal(signal.SIGTERM) is handler  # the sweep's own handler is back
