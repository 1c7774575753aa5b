"""The CamVid study as Hydra phases (conf/study: cell, macro, sample, train, eval on top of
experiment=camvid_study): each phase's composed config (stage, pinned sweep dir, readable job folders,
the arms' interpolations), and the whole study through the real CLI in debug=tiny, one phase killed
and re-run (its finished jobs skipped), tabled by `experiments.results --study`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.results import main as results_main
from rspnet.composition import compose

REPO = Path(__file__).resolve().parents[1]
ARMS = "macro/s0,macro/s1,sample/r1000,sample/r1001"
# the whole study in seconds a job: synthetic 32x64 images, 2 batches of one epoch per stage
TINY = [
    "debug=tiny",
    "dataset.resize_long=null",  # the study's 160 would upscale the 32x64 images
    "model.search_layers=1",
    "model.layers=2",
    "trainer.limit_train_batches=2",
    "trainer.max_epochs=1",
]
PHASES = [
    ("cell", ["seed=0,1"]),
    ("macro", ["seed=0,1"]),
    ("sample", ["seed=1000,1001"]),
    ("train", [f"study.arm={ARMS}", "seed=0"]),
    ("eval", [f"study.arm={ARMS}", "seed=0"]),
    ("profile", [f"study.arm={ARMS}", "stage.repeats=2", "stage.warmup=1"]),
]


def _phase(name: str, *overrides: str):
    return compose("experiment=camvid_study", f"study={name}", "study.dir=outputs/s2", *overrides, hydra=True)


@pytest.mark.parametrize(
    ("phase", "stage", "subdir", "sweep"),
    [
        ("cell", "cell_search", "s3", {"seed": "range(0,8)"}),
        ("macro", "macro_search", "s3", {"seed": "range(0,8)"}),
        ("sample", "sample_arch", "r3", {"seed": "range(1000,1024)"}),
        ("train", "train", "macro/s1/t3", None),
        ("eval", "eval", "macro/s1/t3", None),
        ("profile", "profile", "macro/s1", None),
    ],
)
def test_each_phase_is_one_sweep_of_one_stage_into_its_own_folder(phase, stage, subdir, sweep) -> None:
    cfg = _phase(phase, "seed=3", *(["study.arm=macro/s1"] if phase in ("train", "eval", "profile") else []))
    assert cfg.stage.name == stage and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweep.dir == f"outputs/s2/{phase}" and cfg.hydra.sweep.subdir == subdir
    assert cfg.ckpt_path == "last" and cfg.hydra.job.chdir is False  # resumable; relative paths stay the user's
    assert cfg.dataset.crop_size == [120, 160]  # the study's recipe underneath
    if sweep is not None:
        assert dict(cfg.hydra.sweeper.params) == sweep


def test_the_phases_hand_their_artifacts_on_by_interpolation() -> None:
    assert _phase("macro", "seed=4").genotype == "outputs/s2/cell/s4/genotype.json"
    train = _phase("train", "study.arm=sample/r1003", "seed=1")
    assert (train.genotype, train.macro_arch) == (
        "outputs/s2/sample/r1003/genotype.json",
        "outputs/s2/sample/r1003/macro.json",
    )
    assert train.trainer.max_epochs == 30
    ev = _phase("eval", "study.arm=macro/s2", "seed=1")
    assert ev.ckpt == "outputs/s2/train/macro/s2/t1/checkpoints/last.ckpt" and ev.split == "val"
    # the searches and the random draws share one resource target
    assert {_phase(p).search.target_params for p in ("cell", "macro", "sample")} == {180000}
    assert _phase("sample", "study.target_params=90000").search.target_params == 90000


def test_the_default_arms_are_every_search_seed_and_random_draw() -> None:
    # the protocol's arms (experiments/README.md, round 2): 8 searches, 24 random draws, seeds 0-2 for
    # every arm (the searched arms' fourth seed is a second train/eval command)
    for phase in ("train", "eval", "profile"):
        params = _phase(phase).hydra.sweeper.params
        arms = params["study.arm"].split(",")
        assert arms == [f"macro/s{s}" for s in range(8)] + [f"sample/r{s}" for s in range(1000, 1024)]
        assert params.get("seed") == (None if phase == "profile" else "0,1,2")
    profile = _phase("profile", "study.arm=sample/r1001")
    assert (profile.genotype, profile.macro_arch) == (
        "outputs/s2/sample/r1001/genotype.json",
        "outputs/s2/sample/r1001/macro.json",
    )
    assert profile.stage.threads == 1 and profile.stage.device == "cpu"


def test_a_phase_runs_on_the_slurm_launcher_into_the_same_folders() -> None:
    cfg = _phase("train", "hydra/launcher=slurm", "study.arm=macro/s0")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.name == "rspnet-train"
    assert cfg.hydra.sweep.dir == "outputs/s2/train" and cfg.hydra.sweep.subdir == "macro/s0/t0"


def test_the_study_node_is_not_part_of_a_runs_identity() -> None:
    """Moving the study (study.dir) keeps every job the same run; its artifacts count by content."""
    from rspnet.utils.lifecycle import identity_config

    a = compose("experiment=camvid_study", "study=cell", "study.dir=outputs/a")
    b = compose("experiment=camvid_study", "study=cell", "study.dir=outputs/b")
    assert "study" not in identity_config(a) and identity_config(a) == identity_config(b)


def test_a_phase_without_the_studys_recipe_is_one_error(rspnet_cli) -> None:
    proc = rspnet_cli("-m", "study=cell", "debug=tiny")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "rspnet: error: study=cell: a phase of the CamVid study runs on top of experiment=camvid_study "
        "(its study node: study.dir, study.target_params); add experiment=camvid_study"
    )


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def _start(study: Path, phase: str, extra: list[str], **kwargs) -> subprocess.Popen:
    """`rspnet -m experiment=camvid_study study=<phase> ...` in debug=tiny, writing under `study`."""
    cmd = [sys.executable, "-m", "rspnet.cli", "-m", "experiment=camvid_study", *TINY, f"study.dir={study}"]
    return subprocess.Popen([*cmd, f"study={phase}", *extra], cwd=REPO, env=_env(), text=True, **kwargs)


def _finish(proc: subprocess.Popen, phase: str) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"study={phase}: {err[-3000:]}"


def _killed_after_first_job(study: Path, phase: str, extra: list[str]) -> dict[Path, bytes]:
    """Start a phase, SIGKILL it once its first job's done.json exists; the done markers at that moment."""
    proc = _start(study, phase, extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not list((study / phase).rglob("done.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the phase and nothing else
        proc.wait(timeout=60)
    return {p: p.read_bytes() for p in (study / phase).rglob("done.json")}


@pytest.mark.slow  # 6 rspnet processes (~7 s of imports each), jobs < 1 s: 55-65 s on a busy 2-core box
@pytest.mark.reliability  # docs/reliability.md: a killed phase re-run skips its finished jobs
def test_the_whole_study_runs_phase_by_phase_and_a_killed_phase_resumes(tmp_path: Path) -> None:
    """All five phases in debug=tiny (2 search seeds, 2 random draws, 1 training seed); the cell phase is
    killed once after its first job, re-run: the finished job is skipped (done.json unchanged), the rest run."""
    study = tmp_path / "study"
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    sample = _start(study, "sample", dict(PHASES)["sample"], **pipe)  # needs no other phase: beside the searches
    finished = _killed_after_first_job(study, "cell", ["seed=0,1"])
    assert finished and len(finished) < 2, f"the kill came too late: {sorted(finished)}"
    for phase, extra in PHASES:
        if phase == "sample":
            _finish(sample, phase)
        else:
            _finish(_start(study, phase, extra, **pipe), phase)
    assert all(p.read_bytes() == before for p, before in finished.items())  # skipped, not run again
    expected = {
        "cell": ["s0", "s1"],
        "macro": ["s0", "s1"],
        "sample": ["r1000", "r1001"],
        "train": [f"{a}/t0" for a in ARMS.split(",")],
        "eval": [f"{a}/t0" for a in ARMS.split(",")],
        "profile": ARMS.split(","),
    }
    for phase, jobs in expected.items():
        assert sorted(p.parent.relative_to(study / phase).as_posix() for p in (study / phase).rglob("done.json")) == (
            sorted(jobs)
        ), phase
    for arm in ARMS.split(","):  # every arm one folder: the architecture the train phase read
        assert (study / arm / "genotype.json").is_file() and (study / arm / "macro.json").is_file()
    assert (study / "macro/s0/genotype.json").read_bytes() == (study / "cell/s0/genotype.json").read_bytes()
    assert (study / "eval/sample/r1001/t0/metrics.json").is_file()
    assert json.loads((study / "profile/macro/s1/profile.json").read_text())["params"] > 0
    page = tmp_path / "page" / "results.md"
    assert results_main(["--study", str(study), "--out", str(page)]) == 0
    text = page.read_text()
    assert "| macro/s0 | searched |" in text and "| sample/r1000 | random |" in text
    assert "rank among random" in text and "| cell/s1 | cell (alpha) |" in text and "PLACEHOLDER" in text


@pytest.mark.parametrize(
    ("launcher", "target"),
    [("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"), ("slurm", "SlurmLauncher")],
)
def test_a_phase_composes_on_every_launcher_into_the_same_folders(launcher: str, target: str) -> None:
    cfg = _phase("train", f"hydra/launcher={launcher}", "study.arm=macro/s0")
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweep.dir == "outputs/s2/train" and cfg.hydra.sweep.subdir == "macro/s0/t0"


def test_a_phase_runs_two_jobs_at_once_on_the_joblib_launcher(tmp_path: Path) -> None:
    """`hydra/launcher=joblib hydra.launcher.n_jobs=2`: the cell phase's two searches side by side, each with
    its own done marker and one torch thread (loky gives each worker cores / n_jobs)."""
    study = tmp_path / "study"
    proc = _start(
        study,
        "cell",
        ["seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _finish(proc, "cell")
    for seed in (0, 1):
        job = study / "cell" / f"s{seed}"
        assert json.loads((job / "done.json").read_text())["stage"] == "cell_search"
        assert "threads: intra-op 1," in (job / "rspnet.log").read_text()
    # the two jobs overlapped in time: their logs' first and last lines (millisecond stamps) interleave
    spans = []
    for seed in (0, 1):
        stamps = re.findall(
            r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]",
            (study / "cell" / f"s{seed}" / "rspnet.log").read_text(),
            re.M,
        )
        spans.append((stamps[0], stamps[-1]))
    assert max(a for a, _ in spans) < min(b for _, b in spans), spans
