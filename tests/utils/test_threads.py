"""Thread policy: the arithmetic of the pool sizes, cgroup quotas, DDP shares, overrides, workers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rspnet.errors import ConfigError
from rspnet.utils import threads
from rspnet.utils.threads import cgroup_cpu_limit, plan, plan_for, ranks_per_node, usable_cores


def _files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def no_cgroup(tmp_path: Path) -> dict[str, Path]:
    """A cgroup root and /proc/self/cgroup with no CPU quota anywhere."""
    return {"root": tmp_path / "cg", "proc_cgroup": _files(tmp_path, {"proc": "0::/\n"}) / "proc"}


@pytest.mark.parametrize(
    ("cores", "workers", "ranks", "expected"),
    [
        (2, 1, 1, 1),  # the CamVid recipe on 2 cores: one worker + one torch thread
        (4, 0, 1, 4),
        (1, 3, 1, 1),  # never below 1
        (8, 1, 2, 3),  # DDP: each of 2 ranks gets 4 cores, one of them for its worker
        (4, 0, 8, 1),  # more ranks than cores
    ],
)
def test_plan_arithmetic(cores: int, workers: int, ranks: int, expected: int) -> None:
    p = plan(cores, workers, ranks)
    assert (p.intra_op, p.inter_op, p.source) == (expected, expected, "auto")


def test_overrides_win_over_env_and_auto() -> None:
    assert plan(2, 1, intra_op=3).intra_op == 3
    assert plan(2, 1, intra_op=3).source == "threads.intra_op"
    assert plan(4, 0, env=2).intra_op == 2 and plan(4, 0, env=2).source == "OMP_NUM_THREADS"
    assert plan(4, 0, intra_op=1, env=2).intra_op == 1
    assert plan(4, 0, inter_op=2).inter_op == 2 and plan(4, 0, inter_op=2).intra_op == 4


def test_affinity_and_quota(tmp_path: Path, no_cgroup: dict[str, Path]) -> None:
    assert usable_cores(affinity=2, **no_cgroup) == 2
    assert usable_cores(affinity=4, **no_cgroup) == 4
    v2 = _files(tmp_path / "v2", {"cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(v2, no_cgroup["proc_cgroup"]) == pytest.approx(1.5)
    assert usable_cores(affinity=4, root=v2, proc_cgroup=no_cgroup["proc_cgroup"]) == 1  # floor of 1.5
    tiny = _files(tmp_path / "tiny", {"cpu.max": "20000 100000\n"})
    assert usable_cores(affinity=4, root=tiny, proc_cgroup=no_cgroup["proc_cgroup"]) == 1  # 0.2 cores -> 1
    unlimited = _files(tmp_path / "max", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(unlimited, no_cgroup["proc_cgroup"]) is None
    garbled = _files(tmp_path / "bad", {"cpu.max": "lots 100000\n"})
    assert usable_cores(affinity=2, root=garbled, proc_cgroup=no_cgroup["proc_cgroup"]) == 2


def test_cgroup_of_the_process_and_v1(tmp_path: Path) -> None:
    # v2: the quota of the process's own cgroup (from /proc/self/cgroup) or of a parent
    proc = _files(tmp_path, {"proc2": "0::/job/step\n"}) / "proc2"
    v2 = _files(
        tmp_path / "v2",
        {"cpu.max": "max 100000\n", "job/cpu.max": "300000 100000\n", "job/step/cpu.max": "max 100000\n"},
    )
    assert usable_cores(affinity=8, root=v2, proc_cgroup=proc) == 3
    # v1: cpu controller, quota -1 = unlimited
    proc1 = _files(tmp_path, {"proc1": "3:cpuset:/\n2:cpu,cpuacct:/slot\n"}) / "proc1"
    v1 = _files(
        tmp_path / "v1",
        {
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "cpu,cpuacct/slot/cpu.cfs_quota_us": "250000\n",
            "cpu,cpuacct/slot/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(v1, proc1) == pytest.approx(2.5)
    assert usable_cores(affinity=4, root=v1, proc_cgroup=proc1) == 2


def test_ranks_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert ranks_per_node(OmegaConf.create({"strategy": "auto", "devices": 1})) == 1
    assert ranks_per_node(OmegaConf.create({"strategy": "ddp", "devices": 2})) == 2
    assert ranks_per_node(OmegaConf.create({"strategy": "ddp_spawn", "devices": [0, 1, 2]})) == 3
    assert ranks_per_node(OmegaConf.create({"strategy": "ddp", "devices": "auto"})) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun / SLURM launch: the launcher knows best
    assert ranks_per_node(OmegaConf.create({"strategy": "ddp", "devices": 2})) == 4
    cfg = OmegaConf.create(
        {
            "threads": {"intra_op": None, "inter_op": None},
            "dataset": {"num_workers": 0},
            "trainer": {"strategy": "ddp", "devices": 1},
        }
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert plan_for(cfg, cores=8).intra_op == 2  # 8 cores / 4 local ranks


def test_config_keys_and_bad_values(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    p = plan_for(make_cfg("dataset.num_workers=1"), cores=2)
    assert (p.intra_op, p.workers, p.ranks) == (1, 1, 1)
    assert plan_for(make_cfg("threads.intra_op=3", "threads.inter_op=2"), cores=2).intra_op == 3
    with pytest.raises(ConfigError, match="threads.intra_op=0"):
        plan_for(make_cfg("threads.intra_op=0"), cores=2)


def test_apply_sets_torch_logs_and_exports(make_cfg, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    monkeypatch.setattr(threads, "_exported", None)
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="rspnet.utils.threads"):
            p = threads.apply(make_cfg("dataset.num_workers=1"))
        assert p.intra_op == 2 and torch.get_num_threads() == 2
        assert "threads: intra-op 2" in caplog.text
        assert os.environ["OMP_NUM_THREADS"] == "2"  # what DDP ranks start from
        # the value apply() exported is not mistaken for the user's on the next stage
        monkeypatch.setattr(threads, "usable_cores", lambda: 1)
        assert threads.apply(make_cfg()).intra_op == 1
    finally:
        torch.set_num_threads(before)


def test_worker_init_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    for name in threads.THREAD_ENV:
        monkeypatch.setenv(name, "7")
    torch.set_num_threads(2)
    try:
        threads.worker_init(0)
        assert torch.get_num_threads() == 1
        assert all(os.environ[n] == "1" for n in threads.THREAD_ENV)
    finally:
        torch.set_num_threads(before)


def test_loaders_use_worker_init(make_cfg) -> None:
    from rspnet.data import build_datamodule

    dm = build_datamodule(make_cfg("dataset.num_workers=1", "dataset.num_train=4", "dataset.num_val=2"))
    dm.setup("fit")
    assert dm.train_dataloader().worker_init_fn is threads.worker_init
    weight, arch = dm.search_dataloaders()
    assert weight.worker_init_fn is threads.worker_init and arch.worker_init_fn is threads.worker_init


class _Probe(torch.utils.data.Dataset):
    """Reports, from inside a loader worker, the thread counts it sees and a numpy draw."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> tuple[int, int, float]:
        import cv2
        import numpy as np

        return torch.get_num_threads(), cv2.getNumThreads(), float(np.random.rand())


def test_real_worker_has_one_opencv_thread_and_lightning_seeding(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    from lightning_fabric.utilities.seed import pl_worker_init_function

    cv2.setNumThreads(4)  # what the parent runs with (OpenCV defaults to one thread per core)
    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    try:
        threads.limit_opencv_threads()  # what the loaders do before their workers fork
        assert cv2.getNumThreads() == 1
        torch.manual_seed(0)
        batch = next(iter(torch.utils.data.DataLoader(_Probe(), num_workers=1, worker_init_fn=threads.worker_init)))
        assert int(batch[0]) == 1 and int(batch[1]) == 1
        # the worker was seeded as Lightning seeds it when no worker_init_fn is given
        torch.manual_seed(0)
        ref = next(iter(torch.utils.data.DataLoader(_Probe(), num_workers=1, worker_init_fn=pl_worker_init_function)))
        assert float(batch[2]) == float(ref[2])
    finally:
        cv2.setNumThreads(-1)


def test_loaders_size_opencv_in_the_parent(make_cfg) -> None:
    import cv2

    from rspnet.data import build_datamodule

    dm = build_datamodule(make_cfg("dataset.num_workers=1", "dataset.num_train=4", "dataset.num_val=2"))
    dm.setup("fit")
    cv2.setNumThreads(4)
    try:
        dm.train_dataloader()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(-1)


# The parent runs OpenCV's pool (as any in-process cv2 use before a later fork does: a test suite, a
# notebook, stage after stage in one process), then iterates the datamodule's loader with forked workers.
# A worker that resized OpenCV's pool itself hung forever in pthread_cond_destroy.
_FORK_AFTER_OPENCV = """
import time
import cv2, numpy as np
from rspnet.composition import compose
from rspnet.data import build_datamodule
cv2.setNumThreads(2)
img = np.random.rand(2000, 2000, 3).astype(np.float32)  # large enough that the pool stays up
cfg = compose("logger=none", "print_config=false", "dataset.num_workers=2", "dataset.num_train=4",
              "dataset.num_val=2", "dataset.batch_size=2")
dm = build_datamodule(cfg)
dm.setup("fit")
for _ in range(4):  # the old code hung in about 4 of 5 forks: four loaders, four sets of workers
    for _ in range(5):
        cv2.GaussianBlur(img, (5, 5), 0)
    time.sleep(1)  # the pool's threads asleep on their condition variable at the fork (what hangs)
    print(sum(1 for _ in dm.train_dataloader()), "batches")
"""


@pytest.mark.reliability
def test_forked_workers_after_opencv_pool_ran_do_not_hang() -> None:
    import signal
    import subprocess
    import sys

    # its own session: a hung run's forked workers are killed with it (a timeout kills only the parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", _FORK_AFTER_OPENCV],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("a loader worker forked after OpenCV's pool ran hung (it must not resize the pool itself)")
    assert proc.returncode == 0, err[-2000:]
    assert out.strip().endswith("batches")
