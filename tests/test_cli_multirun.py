"""Hydra multirun through the real CLI: one output dir per job, summary.json/.md at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rspnet.composition import compose

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "logger=none",
    "print_config=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "dataset.num_train=8",
    "dataset.num_val=4",
]


def test_multirun_cell_search_one_dir_per_job_and_summary(rspnet_cli, tmp_path: Path) -> None:
    # 4 jobs: the two with an unknown arch optimiser fail with a user error (recorded, not fatal)
    sweep = tmp_path / "sweep"
    proc = rspnet_cli(
        "-m",
        "stage=cell_search",
        "search.arch_optim=nope,sgd",
        "search.arch_lr=0.003,0.005",
        *TINY,
        f"paths.output_dir={sweep}",
    )
    assert proc.returncode != 0  # the sweep reports the failures at the end...
    assert "rspnet: error: search.arch_optim=nope" in proc.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    jobs = summary["jobs"]
    assert [j["num"] for j in jobs] == [0, 1, 2, 3]
    assert [j["status"] for j in jobs] == ["failed", "failed", "completed", "completed"]  # ...after every job ran
    assert all("ConfigError" in j["error"] and "search.arch_optim=nope" in j["error"] for j in jobs[:2])
    assert {j["output_dir"] for j in jobs} == {str(sweep / str(n)) for n in range(4)}
    for job, lr in zip(jobs[2:], (0.003, 0.005)):
        job_dir = Path(job["output_dir"])
        assert f"search.arch_lr={lr}" in job["overrides"]
        assert isinstance(job["objective"], float)  # final supernet val mIoU (what optuna maximises)
        assert len(job["result"]["genotype_ops"]) == 3
        cfg = OmegaConf.load(job_dir / "config.yaml")  # the job itself wrote into its own dir
        assert cfg.paths.output_dir == str(job_dir) and cfg.search.arch_lr == lr
        assert (job_dir / "genotype.json").is_file() and (job_dir / "checkpoints" / "last.ckpt").is_file()
    table = (sweep / "summary.md").read_text()
    assert "search.arch_lr=0.003" in table and "search.arch_lr=0.005" in table and "completed" in table
    assert "failed" in table and " ".join(jobs[2]["result"]["genotype_ops"]) in table


def test_optuna_sweeper_config() -> None:
    cfg = compose("hparams_search=optuna", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.storage.startswith("sqlite:///") and 1 <= sweeper.n_trials <= 20  # a study that survives the sweeper
    assert set(sweeper.params) == {"search.arch_lr", "search.weight_lr", "search.warmup_epochs"}
    assert cfg.stage.name == "cell_search" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.callbacks.sweep_summary._target_ == "rspnet.utils.callbacks.SweepSummary"


@pytest.mark.slow
def test_optuna_two_trials_end_to_end(rspnet_cli, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    proc = rspnet_cli(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "hydra.sweeper.storage=null",
        *TINY,
        f"paths.output_dir={sweep}",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert len(summary["jobs"]) == 2 and all(isinstance(j["objective"], float) for j in summary["jobs"])
    assert summary["optuna"]["name"] == "optuna" and "best_value" in summary["optuna"]


SMALL = ["debug=tiny", "model=micro"]


def test_optuna_study_resumes_from_sqlite_after_the_sweeper_is_killed(rspnet_cli, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        sys.executable,
        "-m",
        "rspnet.cli",
        "hparams_search=optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=resume",
        "hydra.sweeper.sampler.n_startup_trials=1",
        *TINY,
        *SMALL,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    first = subprocess.Popen(
        [*args, "hydra.sweeper.n_trials=3", f"paths.output_dir={tmp_path / 'first'}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # the sweeper dies as soon as its first trial is recorded in the study
        deadline = time.monotonic() + 240
        while not _completed(storage) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        first.kill()
        first.wait()
    proc = rspnet_cli(*args[3:], "hydra.sweeper.n_trials=1", f"paths.output_dir={tmp_path / 'second'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = _completed(storage)
    assert len(done) == 2 and all(isinstance(t.value, float) for t in done)  # the killed sweep's trial is kept


def _completed(storage: str) -> list:
    """The completed trials of study `resume` in `storage` (none while it does not exist yet)."""
    import optuna

    try:
        study = optuna.load_study(study_name="resume", storage=storage)
    except KeyError:
        return []
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_local_multirun_refuses_only_multi_node_ddp() -> None:
    from rspnet.errors import ConfigError
    from rspnet.utils.trainer import check_ddp_in_multirun

    def check(*overrides: str) -> None:
        cfg = compose(*overrides, hydra=True)
        check_ddp_in_multirun(cfg.trainer, str(cfg.hydra.launcher._target_))

    for multi_node in (
        ["trainer=ddp", "trainer.num_nodes=2"],
        ["trainer=cpu", "trainer.num_nodes=2", "trainer.strategy=ddp"],
        ["trainer=ddp_sim", "trainer.num_nodes=2"],
    ):
        with pytest.raises(ConfigError, match="trainer.num_nodes=2 in a local multirun.*hydra/launcher=slurm"):
            check(*multi_node)
    # one node: a job that re-launches runs as its own process (rspnet.utils.job_process); spawned ranks as before
    check("trainer=ddp")
    check("trainer=gpu", "trainer.devices=-1")
    check("trainer=gpu", "trainer.strategy=fsdp", "trainer.devices=2")
    check("trainer=ddp", "trainer.strategy=ddp_spawn")
    check("trainer=ddp_sim")
    check("trainer=ddp", "trainer.num_nodes=2", "hydra/launcher=slurm")  # ranks are SLURM tasks on every node
    check("trainer=cpu", "trainer.devices=auto")


def _leftovers(marker: str) -> list[int]:
    """Processes (any parent) whose environment carries `marker`: what a test's CLI run left behind."""
    import psutil

    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RSPNET_TEST_MARKER") == marker:
                pids.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return pids


@pytest.mark.parametrize("swept", [False, True], ids=["sweep_level", "job_level"])
def test_multi_node_ddp_stops_the_local_sweep_in_one_line(tmp_path: Path, swept: bool) -> None:
    import uuid

    marker, sweep = uuid.uuid4().hex, tmp_path / "sweep"
    # sweep level: num_nodes=2 is in the sweep's own config (Hydra callback, before any job);
    # job level: swept per job, so job 0 (one node) runs and job 1 stops the sweep before its Trainer exists
    nodes = ["trainer.num_nodes=1,2"] if swept else ["trainer.num_nodes=2", "rsp=on,off"]
    trainer = ["trainer=cpu", "trainer.strategy=ddp", *nodes]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "RSPNET_TEST_MARKER": marker}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rspnet.cli",
            "-m",
            "stage=data_stats",
            "stage.workers=1",
            *TINY,
            *trainer,
            f"paths.output_dir={sweep}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert len(errors) == 1 and "trainer.num_nodes=2" in errors[0] and "hydra/launcher=slurm" in errors[0]
    assert "Traceback" not in proc.stderr
    assert _leftovers(marker) == []  # no rank was ever started
    summary = json.loads((sweep / "summary.json").read_text())
    assert "in a local multirun" in summary["error"] and "The sweep stopped" in (sweep / "summary.md").read_text()
    statuses = [j["status"] for j in summary["jobs"]]
    assert statuses == (["completed", "failed"] if swept else [])


@pytest.mark.slow
def test_multirun_with_ddp_spawn_jobs(rspnet_cli, tmp_path: Path) -> None:
    sweep = tmp_path / "ddp_sweep"  # the supported local DDP + multirun combination: ranks spawned per job
    proc = rspnet_cli(
        "-m",
        "stage=cell_search",
        "trainer=ddp_sim",
        "rsp=on,off",
        *TINY,
        "dataset.batch_size=2",
        "dataset.val_batch_size=2",
        f"paths.output_dir={sweep}",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = json.loads((sweep / "summary.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    assert all((Path(j["output_dir"]) / "genotype.json").is_file() for j in jobs)


@pytest.mark.slow
def test_local_multirun_runs_each_ddp_job_once_with_its_own_ranks(rspnet_cli, tmp_path: Path) -> None:
    import uuid

    # `strategy=ddp` re-launches the command line for rank 1: each job runs as its own process with its own
    # overrides (rspnet.utils.job_process), so rank 1 re-runs that job, not the sweep
    marker, sweep = uuid.uuid4().hex, tmp_path / "sweep"
    proc = rspnet_cli(
        "-m",
        "debug=tiny",
        "stage=train",
        "genotype=paper_like",
        "seed=0,1",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        f"paths.output_dir={sweep}",
        cwd=tmp_path,  # a stray run dir (outputs/, multirun/) would land here
        env={"RSPNET_TEST_MARKER": marker},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("Launching 2 jobs locally") == 1  # no rank re-ran the sweep
    # exactly 2 trainings, each of 2 ranks
    assert log.count("GLOBAL_RANK: 0, MEMBER: 1/2") == 2 and log.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 2
    assert log.count("`Trainer.fit` stopped") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml", "summary.json", "summary.md"]
    jobs = json.loads((sweep / "summary.json").read_text())["jobs"]
    assert [(j["num"], j["status"]) for j in jobs] == [(0, "completed"), (1, "completed")]
    for seed, job in enumerate(jobs):
        job_dir = sweep / str(seed)
        assert isinstance(job["objective"], float) and job["objective"] == pytest.approx(job["result"]["best_val_miou"])
        cfg = OmegaConf.load(job_dir / "config.yaml")  # the job's own values, in its own dir
        assert cfg.seed == seed and cfg.paths.output_dir == str(job_dir)
        hydra = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra  # the sweep's record, not overwritten
        assert hydra.mode == "MULTIRUN" and f"seed={seed}" in hydra.overrides.task
        assert (job_dir / "train.json").is_file() and (job_dir / "checkpoints" / "last.ckpt").is_file()
        # both ranks of this job logged into this job's dir: rank 0 (the job's process) and rank 1
        assert (job_dir / "rspnet.log").read_text().count("GLOBAL_RANK: 0, MEMBER: 1/2") == 1
        assert (job_dir / "train_ddp_process_1.log").read_text().count("GLOBAL_RANK: 1, MEMBER: 2/2") == 1
    assert _leftovers(marker) == []
