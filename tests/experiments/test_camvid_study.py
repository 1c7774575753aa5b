"""experiments.camvid_study: the plan (arms, dependencies), done markers, resume, failures; --debug end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.camvid_study import Job, command, parse_args, plan, run_study


def _names(jobs: list[Job]) -> list[str]:
    return [j.name for j in jobs]


def test_full_plan_has_every_arm_in_dependency_order(tmp_path: Path) -> None:
    jobs, arms = plan(parse_args(["--out", str(tmp_path), "--root", str(tmp_path)]))
    names = _names(jobs)
    for i, job in enumerate(jobs):
        assert all(dep in names[:i] for dep in job.deps), job.name  # deps always run first
    groups = {a.name: a.group for a in arms}
    assert sum(g == "random" for g in groups.values()) >= 8
    assert {"abl_default_macro", "abl_conv3x3_cell", "abl_rsp_off", "abl_macro_beta", "baseline_unet"} <= set(groups)
    by_name = {a.name: a for a in arms}
    assert len(by_name["searched_s0"].runs) >= 2 and len(by_name["searched_s1"].runs) >= 2
    assert sum(len(a.runs) >= 2 for a in arms if a.group == "random") >= 4
    # random architectures are parameter-matched to the searched one, and beta-only scoring is a macro search
    sample = next(j for j in jobs if j.name == "arch/random_r0")
    args = sample.args(tmp_path)
    assert f"sample.param_match={tmp_path / 'arch/searched_s0'}" in args and "stage=sample_arch" in args
    assert "macro.scoring=beta" in next(j for j in jobs if j.name == "search/macro_beta_s0").args(tmp_path)
    # every rspnet arm: identical recipe; the reported number is the last checkpoint on val
    train = next(j for j in jobs if j.name == "train/random_r3_t1").args(tmp_path)
    assert "experiment=camvid_study" in train and "seed=1" in train
    ev = next(j for j in jobs if j.name == "train/random_r3_t1/eval").args(tmp_path)
    assert "split=val" in ev and any(a.endswith("train/random_r3_t1/checkpoints/last.ckpt") for a in ev)


def test_the_baseline_arm_is_stage_train_net_monai_unet_then_stage_eval(tmp_path: Path) -> None:
    """The library baseline runs through the CLI like every arm: the net group's entry, the same layout."""
    jobs, arms = plan(parse_args(["--out", str(tmp_path), "--root", str(tmp_path), "--baseline-seeds", "2"]))
    baseline = next(a for a in arms if a.name == "baseline_unet")
    assert baseline.group == "baseline" and baseline.runs == {0: "train/baseline_unet_t0", 1: "train/baseline_unet_t1"}
    by_name = {j.name: j for j in jobs}
    d = tmp_path / "train/baseline_unet_t1"
    train = command(by_name["train/baseline_unet_t1"], d)
    assert train[:3] == [sys.executable, "-m", "rspnet.cli"] and all(j.kind in ("rspnet", "write") for j in jobs)
    assert {"experiment=camvid_study", "stage=train", "net=monai_unet", "seed=1"} <= set(train)
    assert f"paths.output_dir={d}" in train
    ev = command(by_name["train/baseline_unet_t1/eval"], d / "eval")
    assert by_name["train/baseline_unet_t1/eval"].deps == ["train/baseline_unet_t1"]
    assert {"stage=eval", "split=val", f"ckpt={d / 'checkpoints/last.ckpt'}"} <= set(ev)


def test_done_markers_skip_jobs_and_failures_block_only_dependents(tmp_path: Path) -> None:
    jobs, _ = plan(parse_args(["--debug", "--out", str(tmp_path)]))
    ran: list[str] = []

    def fake(job: Job, d: Path) -> dict:
        ran.append(job.name)
        if job.name == "search/macro_beta_s0":
            raise subprocess.CalledProcessError(1, ["rspnet"])
        return {"wall_s": 1.0, "cpu_s": 0.5}

    first = run_study(jobs, tmp_path, fake)
    assert first["failed"] == ["search/macro_beta_s0"] and (tmp_path / "search/macro_beta_s0/failed").is_file()
    assert first["blocked"] == ["train/abl_macro_beta_t0", "train/abl_macro_beta_t0/eval"]
    assert "train/baseline_unet_t0" in first["ran"]  # independent arms still ran
    assert json.loads((tmp_path / "train/searched_s0_t0/done").read_text())["wall_s"] == 1.0
    ran.clear()
    second = run_study(jobs, tmp_path, lambda job, d: ran.append(job.name) or {"wall_s": 2.0, "cpu_s": 1.0})
    # only the failed job and what it blocked run again; finished ones are skipped
    assert ran == ["search/macro_beta_s0", "train/abl_macro_beta_t0", "train/abl_macro_beta_t0/eval"]
    assert len(second["skipped_done"]) == len(jobs) - 3 and not (tmp_path / "search/macro_beta_s0/failed").exists()
    (tmp_path / "train/random_r1_t0/done").unlink()
    ran.clear()
    run_study(jobs, tmp_path, lambda job, d: ran.append(job.name) or {"wall_s": 2.0, "cpu_s": 1.0})
    assert ran == ["train/random_r1_t0"]


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    jobs, _ = plan(parse_args(["--debug", "--out", str(tmp_path)]))
    job = next(j for j in jobs if j.name == "train/searched_s0_t0")
    d = tmp_path / job.name
    assert "ckpt_path=last" not in command(job, d)
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert "ckpt_path=last" in command(job, d) and f"paths.output_dir={d}" in command(job, d)


def test_bad_variant_and_missing_root_are_one_line_errors(tmp_path: Path, capsys) -> None:
    from experiments.camvid_study import main

    assert main(["--out", str(tmp_path / "o"), "--root", str(tmp_path / "missing")]) == 2
    assert "--root" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--variant"):
        plan(parse_args(["--debug", "--out", str(tmp_path), "--variant", "nothing"]))
    jobs, arms = plan(parse_args(["--debug", "--out", str(tmp_path), "--variant", "lr03=search.arch_adam_lr=0.03"]))
    assert "search.arch_adam_lr=0.03" in next(j for j in jobs if j.name == "search/cell_lr03").args(tmp_path)
    assert any(a.name == "variant_lr03" for a in arms)


@pytest.mark.slow
def test_debug_study_runs_end_to_end_and_the_results_page_builds(tmp_path: Path) -> None:
    from experiments.camvid_study import main
    from experiments.results import main as results_main

    out = tmp_path / "study"
    assert main(["--debug", "--out", str(out)]) == 0
    plan_ = json.loads((out / "study.json").read_text())
    assert all((out / j["name"] / "done").is_file() for j in plan_["jobs"])
    metrics = json.loads((out / "train/random_r0_t0/eval/metrics.json").read_text())
    assert metrics["arch_provenance"] == {"genotype": "random", "macro": "random"}
    assert json.loads((out / "train/baseline_unet_t0/eval/metrics.json").read_text())["miou"] is not None
    from experiments.results import arm_rows

    baseline = next(r for r in arm_rows(out, plan_) if r["name"] == "baseline_unet")
    assert baseline["gflops"] > 0 and baseline["params"] > 0 and baseline["cpu_s"] > 0  # rebuilt from its checkpoint
    assert main(["--debug", "--out", str(out)]) == 0  # everything done: nothing reruns
    page = tmp_path / "docs" / "results.md"
    assert results_main(["--study", str(out), "--out", str(page)]) == 0
    text = page.read_text()
    assert "PLACEHOLDER produced by `--debug`" in text and "| searched_s0 |" in text and "rank among random" in text
    for pic in ("strip.png", "miou_vs_params.png", "searched_cell.png", "searched_trellis.png"):
        assert (tmp_path / "docs" / "img" / "results" / pic).is_file()
    assert list((tmp_path / "docs" / "img" / "results").glob("overlay_*.png"))


def test_two_workers_run_independent_jobs_at_once_and_keep_dependency_order(tmp_path: Path) -> None:
    import threading
    import time

    jobs, _ = plan(parse_args(["--debug", "--out", str(tmp_path)]))
    lock, active, most, order = threading.Lock(), [0], [0], []

    def fake(job: Job, d: Path) -> dict:
        for dep in job.deps:  # a job starts only after its deps wrote their done markers
            assert (tmp_path / dep / "done").is_file(), (job.name, dep)
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            order.append(job.name)
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        if job.name == "search/macro_beta_s0":
            raise subprocess.CalledProcessError(1, ["rspnet"])
        return {"wall_s": 1.0, "cpu_s": 0.5}

    status = run_study(jobs, tmp_path, fake, workers=2)
    assert most[0] == 2  # independent jobs overlapped, never more than asked
    assert status["failed"] == ["search/macro_beta_s0"]
    assert sorted(status["blocked"]) == ["train/abl_macro_beta_t0", "train/abl_macro_beta_t0/eval"]
    assert len(status["ran"]) == len(jobs) - 3 and set(order) == {j.name for j in jobs} - set(status["blocked"])


def test_run_job_counts_the_cpu_time_of_its_own_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments import camvid_study

    burn = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]
    monkeypatch.setattr(camvid_study, "command", lambda job, d: burn)
    rec = camvid_study.run_job(Job("x", "rspnet", lambda d: []), tmp_path / "x")
    assert 0.3 <= rec["cpu_s"] < 2.0 and rec["wall_s"] >= 0.3
    monkeypatch.setattr(camvid_study, "command", lambda job, d: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(subprocess.CalledProcessError):
        camvid_study.run_job(Job("y", "rspnet", lambda d: []), tmp_path / "y")
