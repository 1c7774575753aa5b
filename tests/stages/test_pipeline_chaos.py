"""Chaos test of `stage=pipeline`: SIGKILLed at seeded random moments in every stage and resumed
each time with the documented command, it ends with the artifacts of an uninterrupted run."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

import rspnet.stages
from rspnet.stages import pipeline
from rspnet.stages import run_stage as run
from rspnet.utils import run_record
from tests.conftest import DATA

pytestmark = pytest.mark.reliability

STAGES = pipeline.STAGES
# about 10 s of work per stage on one core: long enough to land kills inside each stage
PIPELINE = (
    "stage=pipeline",
    *DATA,
    "stage.cell_search_epochs=3",
    "stage.macro_search_epochs=3",
    "stage.train_epochs=3",
    "trainer.deterministic=true",
    "dataset.num_train=16",
    "dataset.num_val=4",
)
RESUME = "ckpt_path=last"  # README: a killed pipeline resumes with the same command + ckpt_path=last


def _running_stage(out: Path) -> str | None:
    """The stage a pipeline in `out` is in: the first one that started and has no done marker."""
    for name in STAGES:
        if not (out / name / run_record.DONE).is_file():
            return name if (out / name).is_dir() else None
    return None


def _state_dicts(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpts = {"train_last": out / "train" / "checkpoints" / "last.ckpt"}
    ckpts.update({f"train_{p.name}": p for p in (out / "train" / "checkpoints").glob("best*.ckpt")})
    return {k: torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for k, p in ckpts.items()}


def _assert_same_artifacts(full: Path, cut: Path) -> None:
    for rel in ("cell_search/genotype.json", "macro_search/macro.json", "eval/metrics.json"):
        a, b = (full / rel).read_text().replace(str(full), "<out>"), (cut / rel).read_text().replace(str(cut), "<out>")
        assert a == b, rel
    sa, sb = _state_dicts(full), _state_dicts(cut)
    assert sa.keys() == sb.keys() and len(sa) == 2
    for name in sa:
        assert sa[name].keys() == sb[name].keys()
        differ = [k for k in sa[name] if not torch.equal(sa[name][k], sb[name][k])]
        assert not differ, f"{name} differs in {differ[:5]}"


@pytest.mark.slow
def test_pipeline_killed_in_every_stage_resumes_to_the_uninterrupted_result(cli, start_cli, tmp_path: Path) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    done = cli(*PIPELINE, f"paths.output_dir={full}")
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = json.loads((full / "pipeline.json").read_text())["seconds"]
    rng = random.Random(15)
    killed: list[str] = []
    targets = ["cell_search", "macro_search", "train", "eval", *rng.choices(STAGES[:3], k=2)]
    rng.shuffle(targets)
    targets.sort(key=STAGES.index)  # stages run in order: kill in order, several times in some
    for attempt in range(12):
        if not targets:
            break
        target = targets[0]
        args = (*PIPELINE, f"paths.output_dir={cut}", *((RESUME,) if attempt else ()))
        proc = start_cli(*args)
        deadline = time.monotonic() + 300
        while _running_stage(cut) != target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.8) * float(seconds[target] or 0.5))  # a seeded moment inside the stage
        stage = _running_stage(cut)
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.kill()
        proc.wait()
        killed.append(stage or "start")
        if stage == target:
            targets.pop(0)
    print("killed in:", killed)
    assert len(killed) >= 5 and set(STAGES) <= set(killed), killed
    resumed = cli(*PIPELINE, f"paths.output_dir={cut}", RESUME)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_artifacts(full, cut)


def test_resume_skips_finished_stages_and_continues_the_killed_one(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """Fast part: done markers skip a stage; a stage with last.ckpt gets ckpt_path=last; fresh runs forget markers."""
    from rspnet.errors import ConfigError
    from rspnet.utils.io import atomic_write_text

    out = tmp_path / "run"
    calls: list[tuple[str, object]] = []
    crash: dict[str, BaseException] = {}

    real = rspnet.stages.get_stage

    def fake(name: str) -> Callable[[DictConfig], dict]:
        if name == "pipeline":
            return real(name)

        def stage(cfg: DictConfig) -> dict:
            calls.append((name, cfg.ckpt_path))
            if isinstance(crash.get(name), ConfigError):
                raise crash.pop(name)  # refused before writing anything
            atomic_write_text(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", name)
            if name in crash:
                raise crash.pop(name)  # killed after its first checkpoint
            return {"stage": name, "best_ckpt": None, "loss": float("nan")}

        return stage

    monkeypatch.setattr(rspnet.stages, "get_stage", fake)
    monkeypatch.setattr(pipeline, "_print_summary", lambda summary, cfg: None)
    crash["train"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg("stage=pipeline", out=out))
    assert calls == [("cell_search", None), ("macro_search", None), ("train", None)]
    calls.clear()
    run(make_cfg("stage=pipeline", RESUME, out=out))
    # finished stages skipped (their done.json); every later stage runs with ckpt_path=last: train goes on from
    # its last.ckpt, eval (no checkpoint) starts fresh
    assert calls == [("train", "last"), ("eval", "last")]
    assert (
        json.loads((out / "cell_search" / run_record.DONE).read_text())["result"]["loss"] is None
    )  # NaN never written
    markers = {n: (out / n / run_record.DONE).read_bytes() for n in STAGES}
    calls.clear()
    crash["cell_search"] = ConfigError("bad input")  # a fresh run refused up front leaves the markers alone...
    with pytest.raises(ConfigError):
        run(make_cfg("stage=pipeline", out=out))
    assert {n: (out / n / run_record.DONE).read_bytes() for n in STAGES} == markers
    crash["cell_search"] = KeyboardInterrupt()  # ...one that wrote something makes them stale
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg("stage=pipeline", out=out))
    assert not any((out / n / run_record.DONE).exists() for n in STAGES)
    with pytest.raises(ConfigError, match="ckpt_path=last only"):
        run(make_cfg("stage=pipeline", "ckpt_path=some.ckpt", out=out))
