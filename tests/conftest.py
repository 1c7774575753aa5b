"""The test tree mirrors the code: a test of `src/rspnet/X/Y.py` is `tests/X/test_Y*.py`, of a top-level
module `src/rspnet/Y.py` is `tests/test_Y*.py`, of `bench/Y.py` / `experiments/Y.py` is `tests/bench/test_Y*.py` /
`tests/experiments/test_Y*.py`. Cross-cutting tests (the whole CLI or repository: README commands, makefile,
packaging, notebooks, conventions, architecture rules, behaviour snapshot, fuzzed parsers) sit at the top
level of tests/ beside the top-level modules' tests; there is no other folder. Each test file's name is
unique in the tree (tests/test_architecture_rules.py checks both rules). The quality of a test is a marker,
not a folder (pyproject.toml): `slow`, `requires_gpu`, `reliability` (a guarantee of docs/reliability.md)
and `distributed` (DDP / several processes).

Shared fixtures live here: compose the Hydra config once per test with overrides, run the CLI, tiny
configs and a trained checkpoint of the fixed-architecture stages, a tiny supernet and loaders for the
search steps, and the on-disk dataset trees of tests/data/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from rspnet.composition import compose
from rspnet.genotype import Genotype
from rspnet.models.supernet import CellSupernet

# the on-disk dataset trees of the data tests (Cityscapes, CamVid, Mapillary layouts), for every folder
from tests.data.conftest import camvid_root, cityscapes_root, make_mapillary  # noqa: F401

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the thread policy honours it: 1 thread in run_stage and subprocesses
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`make_cfg("stage=cell_search", "model=tiny", out=...)` -> composed config writing under tmp."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        cfg = compose("logger=none", "print_config=false", *overrides)
        with open_dict(cfg):
            if not any(o.startswith("paths.output_dir=") for o in overrides):
                cfg.paths.output_dir = str(out or tmp_path / "run")
        return cfg

    return _make


@pytest.fixture
def rspnet_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`rspnet_cli(*args, cwd=REPO, timeout=600, env=None)`: `python -m rspnet.cli ARGS` in a subprocess.

    One CPU thread, W&B offline, one-line errors (HYDRA_FULL_ERROR=0); `env` adds variables; output captured.
    """

    def run(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict[str, str] | None = None):
        full = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
        full |= {"HYDRA_FULL_ERROR": "0", **(env or {})}
        cmd = [sys.executable, "-m", "rspnet.cli", *args]
        return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)

    return run


# ---- tiny configs and a trained checkpoint of the fixed-architecture stages

OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]
# synthetic data small enough for seconds per epoch on one core (conf/debug/tiny.yaml)
TINY = ["debug=tiny", "trainer.max_epochs=1", "model.layers=2"]


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    """Compose conf/ with the tiny overrides, writing under `out`."""
    cfg = compose(*TINY, *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@pytest.fixture(scope="session")
def genotype_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid genotype.json."""
    return Genotype.from_ops(OPS, rsp=True).save(tmp_path_factory.mktemp("geno") / "genotype.json")


@pytest.fixture
def tiny_cfg(tmp_path: Path, genotype_file: Path) -> Callable[..., DictConfig]:
    """`tiny_cfg("stage=train", ..., out=None)` -> tiny config with `genotype=` set."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_cfg(out or tmp_path / "run", f"genotype={genotype_file}", *overrides)

    return _make


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, genotype_file: Path) -> dict:
    """One epoch of stage=train; returns its result dict plus `out` (shared, read-only for tests)."""
    from rspnet.stages.train import run as run_train

    out = tmp_path_factory.mktemp("trained")
    result = run_train(compose_cfg(out, "stage=train", f"genotype={genotype_file}"))
    return result | {"out": out}


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of stage=train at the micro size (paper_like genotype, 19 classes)."""
    from rspnet.architecture import PAPER_GENOTYPE
    from rspnet.stages.train import run as run_train

    out = tmp_path_factory.mktemp("api_trained")
    return Path(run_train(compose_cfg(out, "stage=train", f"genotype={PAPER_GENOTYPE}"))["last_ckpt"])


# ---- the guarantee suites (docs/reliability.md): tiny configs, a CLI runner and a killable CLI process

# data and nets small enough for about a second per epoch on one core (conf/debug/tiny.yaml, conf/model/micro.yaml)
DATA = ("debug=tiny", "model=micro")
CELL = ("stage=cell_search", *DATA)
MACRO = ("stage=macro_search", *DATA)
TRAIN = ("stage=train", *DATA)


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
def searched_genotype_file(tmp_path: Path) -> Path:
    """A valid genotype.json as stage 1 writes it (with its search facts; one per test)."""
    return Genotype.from_ops(OPS, rsp=True, search={"dataset": "synthetic"}).save(tmp_path / "genotype.json")


# ---- stage-1 steps: a tiny supernet, tiny tensors, and a Trainer-driven fit


def _tiny_net(rsp: bool = True, num_classes: int = 3) -> CellSupernet:
    return CellSupernet(num_classes, base_width=4, scales=[4, 8], layers=1, rsp=rsp, head_channels=8)


def _tiny_loader(n: int = 8, num_classes: int = 3, size: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, num_classes, (n, size, size), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


@pytest.fixture
def tiny_net() -> Callable[..., CellSupernet]:
    """`tiny_net(rsp=True, num_classes=3)`: 2 scales x 1 layer at B = 4, fast enough for many CPU steps."""
    return _tiny_net


@pytest.fixture
def tiny_loader() -> Callable[..., DataLoader]:
    """`tiny_loader(n=8, num_classes=3, size=16, batch_size=4, seed=0)`: random images and masks."""
    return _tiny_loader


@pytest.fixture
def fit() -> Callable[..., pl.Trainer]:
    """`fit(module, weight_loader, arch_loader, val_loader=None, epochs=1)` with a bare Trainer."""

    def _fit(
        module: pl.LightningModule, weight: DataLoader, arch: DataLoader, val: DataLoader | None = None, epochs: int = 1
    ) -> pl.Trainer:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if val is not None else 0,
        )
        trainer.fit(module, CombinedLoader({"weight": weight, "arch": arch}, "max_size_cycle"), val)
        return trainer

    return _fit


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`requires_gpu` tests skip cleanly without CUDA (they run on a GPU machine: `pytest -m requires_gpu`)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="requires_gpu: no CUDA device")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)
