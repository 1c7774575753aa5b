"""Fixtures for the reliability suite: tiny configs, a CLI runner and a killable CLI process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rspnet.genotype import Genotype

REPO = Path(__file__).resolve().parents[2]
# data and nets small enough for about a second per epoch on one core (conf/debug/tiny.yaml, conf/model/micro.yaml)
DATA = ("debug=tiny", "model=micro")
CELL = ("stage=cell_search", *DATA)
MACRO = ("stage=macro_search", *DATA)
TRAIN = ("stage=train", *DATA)
OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]


def macro_doc() -> dict:
    """A valid two-layer macro.json document (scales 4 and 8, top-2 inputs) for the bad-input and fuzz tests."""
    return {
        "format": "rspnet.macro/1",
        "layers": 2,
        "scales": [4, 8],
        "top_k": 2,
        "nodes": [
            {"layer": 1, "scale": 4, "inputs": [{"layer": 0, "scale": 4, "score": 1.0}]},
            {"layer": 1, "scale": 8, "inputs": [{"layer": 0, "scale": 4, "score": 1.0}]},
            {
                "layer": 2,
                "scale": 4,
                "inputs": [{"layer": 1, "scale": 4, "score": 0.6}, {"layer": 1, "scale": 8, "score": 0.4}],
            },
            {
                "layer": 2,
                "scale": 8,
                "inputs": [{"layer": 1, "scale": 8, "score": 0.6}, {"layer": 0, "scale": 4, "score": 0.4}],
            },
        ],
    }


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one thread (same float reductions as in-process), no W&B network."""
    return os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONHASHSEED": "0"}


QUIET = ("logger=none", "print_config=false")


def cli_args(*overrides: str) -> list[str]:
    """argv for `python -m rspnet.cli` with quiet, logger-free defaults."""
    return [sys.executable, "-m", "rspnet.cli", *QUIET, *overrides]


@pytest.fixture
def cli(rspnet_cli: Callable[..., subprocess.CompletedProcess]) -> Callable[..., subprocess.CompletedProcess]:
    """`cli(*overrides)` runs the real `rspnet` entry point (quiet, no logger) and returns the finished process."""

    def _run(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return rspnet_cli(*QUIET, *overrides, cwd=REPO, timeout=timeout, env=cli_env())

    return _run


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            proc.kill()
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise TimeoutError("the CLI run never reached the kill point")


@pytest.fixture
def start_cli() -> Callable[..., subprocess.Popen]:
    """`start_cli(*overrides)` starts the CLI in the background (killed at teardown if still alive)."""
    procs: list[subprocess.Popen] = []

    def _start(*overrides: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            cli_args(*overrides), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# `python COUNTING_CLI ...`: the real CLI, counting the training steps it runs (written to $RSPNET_STEPS_FILE at exit)
COUNTING_CLI = """
import atexit, os
from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule
steps = [0]
for cls in (SearchModule, SegModule):
    def counted(self, *args, _step=cls.training_step, **kwargs):
        steps[0] += 1
        return _step(self, *args, **kwargs)
    cls.training_step = counted
atexit.register(lambda: open(os.environ["RSPNET_STEPS_FILE"], "w").write(str(steps[0])))
from rspnet.cli import main
main()
"""


@pytest.fixture
def counting_cli(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess, int]]:
    """`counting_cli(*overrides)` runs the CLI and returns (finished process, training steps it ran)."""
    script, steps = tmp_path / "counting_cli.py", tmp_path / "steps.txt"
    script.write_text(COUNTING_CLI)

    def _run(*overrides: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, int]:
        steps.unlink(missing_ok=True)
        argv = [sys.executable, str(script), *cli_args(*overrides)[3:]]
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=cli_env() | {"RSPNET_STEPS_FILE": str(steps)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc, int(steps.read_text()) if steps.is_file() else -1

    return _run


@pytest.fixture
def genotype_file(tmp_path: Path) -> Path:
    """A valid genotype.json as stage 1 writes it."""
    return Genotype.from_ops(OPS, rsp=True, search={"dataset": "synthetic"}).save(tmp_path / "genotype.json")


# the on-disk dataset trees of the data tests (Cityscapes, CamVid, Mapillary layouts)
# (tests/ is on sys.path through its rootdir conftest, so the data tests are the package `data`)
from data.conftest import camvid_root, cityscapes_root, make_mapillary  # noqa: E402, F401
