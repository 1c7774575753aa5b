"""The run lifecycle (issue 23 items 1-4): stop signals end a run non-zero with incomplete artifacts, SLURM
requeue through Lightning's SIGUSR1 handler, `ckpt_path=last` = resume-or-fresh within one run identity,
last.ckpt a real file (also every N steps)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, BusyError, ConfigError, StoppedError
from rspnet.genotype import Genotype, MacroArch
from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule
from rspnet.stages import run_stage as run
from rspnet.utils.lifecycle import identity_config, run_id
from tests.conftest import CELL, TRAIN, macro_doc

pytestmark = pytest.mark.reliability

ONE_BATCH = ("trainer.limit_train_batches=1", "trainer.limit_val_batches=1")


def _signal_after_epoch(monkeypatch: pytest.MonkeyPatch, module: type, signum: int, epoch: int = 0) -> None:
    """Send `signum` to this process at the end of training epoch `epoch` (before that epoch's checkpoint)."""
    original = module.on_train_epoch_end

    def on_train_epoch_end(self) -> None:  # noqa: ANN001
        original(self)
        if self.current_epoch == epoch:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(module, "on_train_epoch_end", on_train_epoch_end)


def _no_versioned_files(out: Path) -> None:
    assert not [p for p in out.rglob("*.ckpt") if "-v" in p.stem], sorted(out.rglob("*.ckpt"))


# -- item 1: signals ---------------------------------------------------------------------------
def test_sigterm_in_a_search_ends_it_nonzero_with_an_incomplete_genotype_then_resumes(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "cut"
    args = (*CELL, *ONE_BATCH, "trainer.max_epochs=3")
    with monkeypatch.context() as m:
        _signal_after_epoch(m, SearchModule, signal.SIGTERM)
        with pytest.raises(StoppedError) as info:
            run(make_cfg(*args, out=out))
    msg = str(info.value)
    assert info.value.signum == signal.SIGTERM and "\n" not in msg
    assert f"stopped by SIGTERM after checkpoint {out / 'checkpoints' / 'last.ckpt'}" in msg and "ckpt_path=last" in msg
    assert json.loads((out / "genotype.json").read_text())["complete"] is False
    assert not (out / "search.json").exists()  # the result is written at completion only
    with pytest.raises(ArtifactError, match="has not completed .*epoch 1 of 3.*ckpt_path=last"):
        Genotype.load(out / "genotype.json")
    assert not Genotype.load(out / "genotype.json", allow_incomplete=True).complete
    result = run(make_cfg(*args, "ckpt_path=last", out=out))
    assert result["epochs"] == 3 and Genotype.load(out / "genotype.json").complete
    assert "complete" not in json.loads((out / "genotype.json").read_text())  # as shipped files: complete


def test_a_resumed_run_counts_the_time_of_every_attempt(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """A stopped attempt (SIGTERM after epoch 1) keeps its wall/CPU time in .clock.json; the resumed attempt's
    done.json adds it (`attempts` 2) and drops the clock. A fresh run in the folder starts from zero."""
    out = tmp_path / "cut"
    args = (*CELL, *ONE_BATCH, "trainer.max_epochs=2")
    with monkeypatch.context() as m:
        _signal_after_epoch(m, SearchModule, signal.SIGTERM)
        with pytest.raises(StoppedError):
            run(make_cfg(*args, out=out))
    clock = json.loads((out / ".clock.json").read_text())
    assert clock["attempts"] == 1 and clock["wall_s"] > 0 and clock["cpu_s"] > 0
    run(make_cfg(*args, "ckpt_path=last", out=out))
    done = json.loads((out / "done.json").read_text())
    assert done["attempts"] == 2 and done["wall_s"] > clock["wall_s"] and done["cpu_s"] > clock["cpu_s"]
    assert not (out / ".clock.json").exists()
    run(make_cfg(*args, out=out))  # a fresh run: only its own attempt
    assert json.loads((out / "done.json").read_text())["attempts"] == 1


def test_a_signal_outside_a_fit_stops_the_run_at_once(
    make_cfg, tmp_path: Path, monkeypatch, searched_genotype_file
) -> None:
    """SIGINT while the data is set up (no Trainer yet): StoppedError 2, nothing complete left behind."""
    from rspnet.data.datamodule import SegDataModule

    original = SegDataModule.setup

    def setup(self, stage=None) -> None:  # noqa: ANN001
        os.kill(os.getpid(), signal.SIGINT)
        original(self, stage)

    monkeypatch.setattr(SegDataModule, "setup", setup)
    out = tmp_path / "run"
    # what the process had before the run: Python's default_int_handler, or SIG_IGN where the test process was
    # started as a background job of a non-interactive shell (which starts it with SIGINT ignored)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(StoppedError, match="stopped by SIGINT before any checkpoint") as info:
        run(make_cfg(*TRAIN, f"genotype={searched_genotype_file}", out=out))
    assert info.value.signum == signal.SIGINT and not (out / "train.json").exists()
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_incomplete_artifacts_are_refused_by_every_consumer(
    make_cfg, tmp_path: Path, searched_genotype_file: Path
) -> None:
    partial_cell = Genotype.load(searched_genotype_file)
    partial_cell.complete, partial_cell.search = False, {"epochs": 1, "max_epochs": 5}
    cell = partial_cell.save(tmp_path / "partial_genotype.json")
    macro = MacroArch.from_dict(macro_doc() | {"complete": False}).save(tmp_path / "partial_macro.json")
    data = ("debug=tiny", "model=micro")
    for args in (
        ("stage=macro_search", f"genotype={cell}"),
        ("stage=train", f"genotype={cell}"),
        ("stage=train", f"genotype={searched_genotype_file}", f"macro_arch={macro}"),
        ("stage=summary", f"genotype={cell}"),
    ):
        with pytest.raises(ArtifactError, match=r"partial_\w+\.json: written by a search that has not completed"):
            run(make_cfg(*args, *data, out=tmp_path / "out"))
    with pytest.raises(ArtifactError, match="field 'complete'"):
        Genotype.from_dict(partial_cell.to_dict() | {"complete": "no"})


def test_a_stopped_pipeline_stage_gets_no_done_marker(make_cfg, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "pipe"
    args = ("stage=pipeline", "debug=tiny", "model=micro", *ONE_BATCH, "stage.cell_search_epochs=2")
    with monkeypatch.context() as m:
        _signal_after_epoch(m, SearchModule, signal.SIGTERM)
        with pytest.raises(StoppedError, match="cell_search/checkpoints/last.ckpt"):
            run(make_cfg(*args, out=out))
    assert not (out / "cell_search" / "done.json").exists() and not (out / "macro_search").exists()
    assert json.loads((out / "cell_search" / "genotype.json").read_text())["complete"] is False
    # both the stage and the pipeline keep the stopped attempt's time; the resumed pipeline's markers sum it
    stopped = json.loads((out / ".clock.json").read_text())
    assert stopped["attempts"] == 1 and (out / "cell_search" / ".clock.json").is_file()
    run(make_cfg(*args, "ckpt_path=last", out=out))
    pipeline, cell = (json.loads((d / "done.json").read_text()) for d in (out, out / "cell_search"))
    assert pipeline["attempts"] == 2 and pipeline["wall_s"] > stopped["wall_s"] and cell["attempts"] == 2
    assert json.loads((out / "macro_search" / "done.json").read_text())["attempts"] == 1


@pytest.mark.slow
def test_sigterm_through_the_cli_exits_143_with_one_line(start_cli, tmp_path: Path) -> None:
    """The real entry point: SIGTERM after the first checkpoint -> exit 128 + 15, one `rspnet: error:` line."""
    out = tmp_path / "run"
    proc = start_cli(*CELL, "dataset.num_train=24", "trainer.max_epochs=50", f"paths.output_dir={out}")
    _wait_for(proc, out / "checkpoints" / "last.ckpt")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("rspnet: error:")]
    assert errors == [f"rspnet: error: stopped by SIGTERM after checkpoint {out / 'checkpoints' / 'last.ckpt'}; "
                      "resume with the same command and ckpt_path=last"]  # fmt: skip
    assert "Traceback" not in stderr and json.loads((out / "genotype.json").read_text())["complete"] is False


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"the run ended before {path} appeared: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# -- item 2: SLURM requeue ---------------------------------------------------------------------
SLURM_ENV = {
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "rspnet-cell_search",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}
# `scontrol` on PATH: records its argv, then ends the job as SLURM does after a requeue (SIGTERM to the task)
FAKE_SCONTROL = '#!/bin/sh\necho "$@" >> "$FAKE_SCONTROL_LOG"\nkill -TERM "$PPID"\n'


def test_slurm_sigusr1_saves_a_checkpoint_requeues_once_and_the_requeued_job_resumes(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCONTROL_LOG", str(log))
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "job"
    # the submitted command carries ckpt_path=last: the first start has no checkpoint and starts fresh
    args = (*CELL, *ONE_BATCH, "trainer.max_epochs=3", "ckpt_path=last")
    with monkeypatch.context() as m:
        _signal_after_epoch(m, SearchModule, signal.SIGUSR1)  # SLURM's --signal=USR1@N before the time limit
        with pytest.raises(StoppedError, match="stopped by SIGTERM after checkpoint .*ckpt_path=last") as info:
            run(make_cfg(*args, out=out))
    assert info.value.signum == signal.SIGTERM  # the CLI exits 143; SLURM has requeued the job already
    assert log.read_text().splitlines() == ["requeue 4242"]  # requeued exactly once, by Lightning
    hpc = torch.load(out / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert hpc["rspnet_run"]["id"] and "net.alpha" in hpc["state_dict"]
    assert json.loads((out / "genotype.json").read_text())["complete"] is False
    result = run(make_cfg(*args, out=out))  # the requeued job: the same command
    assert result["epochs"] == 3 and Genotype.load(out / "genotype.json").complete
    assert log.read_text().splitlines() == ["requeue 4242"]
    _no_versioned_files(out)


def test_the_slurm_launcher_asks_for_sigusr1_and_submitit_does_not_requeue() -> None:
    """sbatch gets `--signal=USR1@120` (Lightning's requeue signal), not submitit's USR2; submitit's own
    timeout requeue stays off (max_num_timeout: 0)."""
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    from rspnet.resources import config_dir

    launcher = OmegaConf.load(config_dir() / "hydra" / "launcher" / "slurm.yaml")
    assert launcher.max_num_timeout == 0
    sbatch = _make_sbatch_string(
        command="python -m rspnet.cli",
        folder="jobs",
        signal_delay_s=int(launcher.signal_delay_s),
        additional_parameters=OmegaConf.to_container(launcher.additional_parameters, resolve=True),
    )
    signals = [line for line in sbatch.splitlines() if line.startswith("#SBATCH --signal")]
    assert signals == [f"#SBATCH --signal=USR1@{launcher.signal_delay_s}"]


# -- item 3: run identity, ckpt_path=last --------------------------------------------------------
def test_run_identity_ignores_what_may_change_on_resume(make_cfg, tmp_path: Path) -> None:
    base = run_id(identity_config(make_cfg(*CELL, out=tmp_path / "a")))
    same = ("trainer.max_epochs=7", "ckpt_path=last", "threads.intra_op=2", "logger=csv", "dataset.num_workers=1")
    assert run_id(identity_config(make_cfg(*CELL, *same, out=tmp_path / "b"))) == base
    for other in ("seed=1", "search.arch_lr=0.1", "model=tiny", "stage=macro_search"):
        assert run_id(identity_config(make_cfg(*CELL, other, out=tmp_path / "a"))) != base, other


def test_resume_from_another_runs_checkpoint_is_one_error_naming_both(
    make_cfg, tmp_path: Path, searched_genotype_file
) -> None:
    first = tmp_path / "first"
    args = (*TRAIN, *ONE_BATCH, "trainer.max_epochs=1", f"genotype={searched_genotype_file}")
    run(make_cfg(*args, out=first))
    theirs = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["rspnet_run"]["id"]
    ckpt = first / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError) as info:
        run(make_cfg(*args, "train.lr=0.5", f"ckpt_path={ckpt}", out=tmp_path / "second"))
    msg = str(info.value)
    mine = run_id(identity_config(make_cfg(*args, "train.lr=0.5")))
    assert "\n" not in msg and f"run {theirs}, this run is {mine}" in msg and "train.lr=0.01 (this run: 0.5)" in msg
    # a fresh run into the first run's folder with another config: refused, its checkpoint untouched
    before = ckpt.read_bytes()
    with pytest.raises(ConfigError, match=f"paths.output_dir={first} holds checkpoints of another run"):
        run(make_cfg(*args, "seed=3", out=first))
    assert ckpt.read_bytes() == before
    # ckpt_path=last neither continues it (its done.json names the other run first)
    with pytest.raises(ConfigError, match=r"holds a finished run \w+ .*, this run is \w+"):
        run(make_cfg(*args, "seed=3", "ckpt_path=last", out=first))
    (first / "done.json").unlink()  # ... nor, without the marker, its checkpoint
    with pytest.raises(ConfigError, match="checkpoint of another run"):
        run(make_cfg(*args, "seed=3", "ckpt_path=last", out=first))


def test_a_rerun_of_the_same_run_replaces_last_ckpt_without_versioned_copies(make_cfg, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = (*CELL, *ONE_BATCH, "trainer.max_epochs=1")
    run(make_cfg(*args, out=out))
    run(make_cfg(*args, out=out))  # fresh again, same config: allowed
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and not last.is_symlink()  # a real file, not a link Lightning re-creates
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    _no_versioned_files(out)


# -- item 4: last.ckpt every N steps, mid-epoch resume --------------------------------------------
def test_a_step_checkpoint_resumes_mid_epoch_and_runs_to_the_end(
    make_cfg, tmp_path: Path, monkeypatch, searched_genotype_file
) -> None:
    out = tmp_path / "run"
    # 16 images: 3 training batches per epoch (the rest is the held-out slice)
    args = (*TRAIN, "dataset.num_train=16", "trainer.max_epochs=2", "trainer.limit_val_batches=1")
    args += ("checkpoint.every_n_train_steps=1", f"genotype={searched_genotype_file}")
    step, steps = SegModule.training_step, [0]

    def failing(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if self.global_step == 4:  # epoch 1, its second batch: after a mid-epoch checkpoint
            raise RuntimeError("node lost")
        steps[-1] += 1
        return step(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(SegModule, "training_step", failing)
        with pytest.raises(RuntimeError, match="node lost"):
            run(make_cfg(*args, out=out))
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1  # written after step 4, in the middle of epoch 1
    steps.append(0)

    def counting(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps[-1] += 1
        return step(self, *a, **k)

    monkeypatch.setattr(SegModule, "training_step", counting)
    result = run(make_cfg(*args, "ckpt_path=last", out=out))
    # the resumed run trained the two batches after the checkpoint and ended where a full run ends
    assert result["global_step"] == 6 and result["epochs"] == 2 and steps == [4, 2]


def _sleep() -> None:
    import time

    time.sleep(60)


def test_a_forked_worker_keeps_the_default_meaning_of_sigterm(tmp_path: Path) -> None:
    """A DataLoader / pool worker forked inside a run inherits the handler; SIGTERM (a pool's terminate()) must end
    it quietly as by default, not raise the run's stop exception (with a traceback) in the worker."""
    import multiprocessing

    from rspnet.utils.lifecycle import stop_on_signals

    with stop_on_signals(tmp_path):
        worker = multiprocessing.get_context("fork").Process(target=_sleep)
        worker.start()
        time.sleep(0.5)
        worker.terminate()  # SIGTERM
        worker.join(10)
    assert worker.exitcode == -signal.SIGTERM


# -- the done marker: accounting and one resume rule (issue 28 item 5) ---------------------------
def test_every_run_records_wall_and_cpu_time_and_ckpt_path_last_skips_a_finished_run(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "sample"
    first = run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", out=out))
    done = json.loads((out / "done.json").read_text())
    assert done["format"] == "rspnet.done/1" and done["stage"] == "sample_arch"
    assert done["wall_s"] > 0 and done["cpu_s"] >= 0 and done["started"] <= done["finished"]
    assert done["result"] == json.loads(json.dumps(first))
    calls = []
    monkeypatch.setattr("rspnet.stages.sample_arch.run", lambda cfg: calls.append(cfg) or {})
    again = run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", "ckpt_path=last", out=out))
    assert calls == [] and again == done["result"]  # skipped: the recorded result comes back
    run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", out=out))  # a fresh run runs again
    assert len(calls) == 1 and json.loads((out / "done.json").read_text())["result"] == {}


def test_a_finished_marker_of_another_run_is_one_error_with_ckpt_path_last(make_cfg, tmp_path: Path) -> None:
    out = tmp_path / "sample"
    run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", "seed=1", out=out))
    # the marker records the identity it hashes: the error names the key that differs
    with pytest.raises(
        ConfigError,
        match=r"holds a finished run \w+ .*done\.json\), this run is \w+; differs in seed=1 \(this run: 2\)",
    ):
        run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", "seed=2", "ckpt_path=last", out=out))
    # a marker written before the identity was recorded: the two ids alone
    marker = json.loads((out / "done.json").read_text())
    del marker["identity"]
    (out / "done.json").write_text(json.dumps(marker))
    with pytest.raises(ConfigError, match=r"this run is \w+; choose a new paths.output_dir"):
        run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", "seed=2", "ckpt_path=last", out=out))


def test_a_failed_run_leaves_no_done_marker_and_a_fresh_run_drops_an_old_one(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "sample"
    run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", out=out))
    assert (out / "done.json").is_file()

    def failing(cfg) -> dict:  # noqa: ANN001
        from rspnet.utils.io import atomic_write_json

        atomic_write_json(out / "partial.json", {})  # the run wrote something, then failed
        raise RuntimeError("boom")

    monkeypatch.setattr("rspnet.stages.sample_arch.run", failing)
    with pytest.raises(RuntimeError, match="boom"):
        run(make_cfg("stage=sample_arch", "debug=tiny", "model=micro", out=out))
    assert not (out / "done.json").exists()


# -- one process at a time in a run folder -----------------------------------------------------
_HOLD = (
    "import sys, time; from pathlib import Path; from rspnet.utils.run_record import hold\n"
    "with hold(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"
)


def _holder(out: Path) -> subprocess.Popen:
    """Another process holding the lock of the folder `out` (until it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_in_a_running_folder_is_one_error_and_a_killed_holder_frees_it(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "sample"
    out.mkdir()
    (out / "keep.txt").write_text("a previous run's file")
    holder = _holder(out)
    calls = []
    monkeypatch.setattr("rspnet.stages.sample_arch.run", lambda cfg: calls.append(cfg) or {})
    try:
        cfg = make_cfg("stage=sample_arch", "debug=tiny", "model=micro", "ckpt_path=last", out=out)
        with pytest.raises(BusyError, match=rf"paths.output_dir={out} is in use: process {holder.pid} on \S+ \(since"):
            run(cfg)
        assert calls == [] and sorted(p.name for p in out.iterdir()) == [".lock", "keep.txt"]  # nothing touched
    finally:
        holder.kill()  # SIGKILL: no clean-up ran, the kernel released the lock
        holder.wait()
    run(cfg)  # the stale file is no obstacle
    assert len(calls) == 1 and (out / "done.json").is_file() and not (out / ".lock").exists()


def test_the_lock_leaves_no_trace_and_ddp_ranks_above_zero_do_not_take_it(tmp_path: Path, monkeypatch) -> None:
    from rspnet.utils.run_record import hold

    folder = tmp_path / "run"
    folder.mkdir()
    with hold(folder):
        assert (folder / ".lock").is_file()
    assert not any(folder.iterdir())  # the lock file goes with the run
    (tmp_path / "shared").mkdir()
    holder = _holder(tmp_path / "shared")
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank of the holder's run
        with hold(tmp_path / "shared"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_without_flock_on_the_file_system_the_run_goes_on_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    import errno
    import fcntl

    from rspnet.utils.run_record import hold

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    ran = []
    with hold(tmp_path):
        ran.append(True)
    assert ran and "no flock on this file system" in caplog.text and not (tmp_path / ".lock").exists()
