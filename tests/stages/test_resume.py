"""Exact resume: a run interrupted after epoch 1 and resumed with `ckpt_path=last` ends where an
uninterrupted run ends (same alpha/beta/weights, same genotype.json / macro.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule
from rspnet.stages import run_stage as run
from tests.conftest import CELL, MACRO, TRAIN, kill_when

pytestmark = pytest.mark.reliability

DETERMINISTIC = ("trainer.max_epochs=2", "trainer.deterministic=true")


def _state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_state(a: Path, b: Path) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"resumed run differs in {differ[:5]}"


def _assert_resumable(ckpt: dict, search: bool) -> None:
    """What a resume needs is in the checkpoint (and loads with weights_only=True)."""
    assert ckpt["epoch"] == 0 and ckpt["global_step"] > 0 and ckpt["lr_schedulers"]
    rng = ckpt["rspnet"]["rng"] if search else ckpt["rspnet_rng"]
    assert {"python", "numpy", "torch"} <= set(rng)
    if search:  # weights + alpha, weight and arch optimisers, the weight/arch data split
        assert "net.alpha" in ckpt["state_dict"] and len(ckpt["optimizer_states"]) == 2
        split = ckpt["SegDataModule"]["search_split"]  # saved by the datamodule
        assert split["weight"] and split["arch"] and not set(split["weight"]) & set(split["arch"])
    else:
        assert len(ckpt["optimizer_states"]) == 1 and ckpt["rspnet"]["format"] == "rspnet.seg/2"


def _count_steps(monkeypatch: pytest.MonkeyPatch, module: type) -> list[int]:
    """Count `module.training_step` calls into the last element of the returned list."""
    steps, step = [0], module.training_step

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps[-1] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(module, "training_step", counted)
    return steps


def _interrupt_at_epoch(epoch: int) -> Callable[[object], None]:
    def on_train_epoch_start(self: object) -> None:
        if self.current_epoch == epoch:  # type: ignore[attr-defined]
            raise RuntimeError("interrupted")  # Lightning tears down without saving anything more

    return on_train_epoch_start


@pytest.mark.parametrize("module, stage", [(SearchModule, CELL), (SegModule, TRAIN)], ids=["cell_search", "train"])
def test_interrupted_then_resumed_equals_uninterrupted(
    make_cfg, tmp_path: Path, monkeypatch, searched_genotype_file: Path, module: type, stage: tuple[str, ...]
) -> None:
    args = (*stage, *DETERMINISTIC, f"genotype={searched_genotype_file}")
    full, cut = tmp_path / "full", tmp_path / "cut"
    steps = _count_steps(monkeypatch, module)
    run(make_cfg(*args, out=full))
    full_steps = steps[-1]
    steps.append(0)  # the interrupted run
    with monkeypatch.context() as m:
        m.setattr(module, "on_train_epoch_start", _interrupt_at_epoch(1), raising=False)
        with pytest.raises(RuntimeError, match="interrupted"):
            run(make_cfg(*args, out=cut))
    _assert_resumable(torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True), search=module is SearchModule)
    steps.append(0)
    run(make_cfg(*args, "ckpt_path=last", out=cut))
    # the resumed run trains epoch 2 only: it went on from the checkpoint rather than starting over
    assert full_steps > 0 and steps[-1] == full_steps // 2
    _assert_same_state(full, cut)
    if module is SearchModule:
        assert (cut / "genotype.json").read_text() == (full / "genotype.json").read_text()


def _last_epoch(out: Path) -> int | None:
    """Epoch index stored in checkpoints/last.ckpt, or None while there is none (or it is mid-link)."""
    try:
        return int(torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return None


KILL_TRIES = 3  # the kill races the run's second epoch; a try that loses it is repeated, not counted


def _kill_after_epoch_1(
    start_cli: Callable[..., subprocess.Popen],
    counting_cli: Callable[..., tuple],
    args: tuple[str, ...],
    full: Path,
    cut: Path,
) -> None:
    """Uninterrupted CLI run into `full`; CLI run into `cut` SIGKILLed after epoch 1's checkpoint; resume it."""
    done, full_steps = counting_cli(*args, f"paths.output_dir={full}")
    assert done.returncode == 0, done.stderr[-2000:]
    for _ in range(KILL_TRIES):
        proc = start_cli(*args, f"paths.output_dir={cut}")
        assert kill_when(proc, lambda: _last_epoch(cut) == 0), "the run finished before it could be killed"
        if _last_epoch(cut) == 0:  # killed during epoch 2: the resume really starts from epoch 1's state
            break
        # a fast machine wrote epoch 2's checkpoint between the poll and the kill: nothing left to resume
        shutil.rmtree(cut)
    else:
        pytest.fail(f"{KILL_TRIES} kills all landed after epoch 2's checkpoint; make the run slower (SLOWER)")
    resumed, resumed_steps = counting_cli(*args, f"paths.output_dir={cut}", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the resumed process ran epoch 2's steps only: it went on from the checkpoint, it did not start over
    assert full_steps > 0 and resumed_steps == full_steps // 2, (full_steps, resumed_steps)
    _assert_same_state(full, cut)


# more batches per epoch, so that epoch 2 is still running when the test kills the process
SLOWER = ("dataset.num_train=24", "dataset.num_val=8")


@pytest.mark.slow
def test_cell_search_killed_with_sigkill_resumes_exactly(start_cli, counting_cli, tmp_path: Path) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    _kill_after_epoch_1(start_cli, counting_cli, (*CELL, *SLOWER, *DETERMINISTIC), full, cut)
    assert (cut / "genotype.json").read_text() == (full / "genotype.json").read_text()
    assert json.loads((cut / "genotype.json").read_text())["search"]["epochs"] == 2


@pytest.mark.slow
def test_macro_search_killed_with_sigkill_resumes_exactly(
    start_cli, counting_cli, tmp_path: Path, searched_genotype_file: Path
) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    _kill_after_epoch_1(
        start_cli, counting_cli, (*MACRO, *SLOWER, *DETERMINISTIC, f"genotype={searched_genotype_file}"), full, cut
    )
    assert (cut / "macro.json").read_text().replace(str(cut), "") == (full / "macro.json").read_text().replace(
        str(full), ""
    )


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_exactly(
    start_cli, counting_cli, tmp_path: Path, searched_genotype_file: Path
) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    _kill_after_epoch_1(
        start_cli, counting_cli, (*TRAIN, *SLOWER, *DETERMINISTIC, f"genotype={searched_genotype_file}"), full, cut
    )
