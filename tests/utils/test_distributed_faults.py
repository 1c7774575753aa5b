"""One rank's fault ends every rank (rspnet.utils.distributed.ranks_fail_together), with ranks launched like torchrun.

Each rank is its own process started here with torchrun's environment (RANK, WORLD_SIZE,
MASTER_ADDR/PORT, TORCHELASTIC_RUN_ID ...), so Lightning takes them as externally launched
(TorchElasticEnvironment) and nothing kills the survivors for us, unlike `ddp_spawn`.
The faults are injected by scripts written here: nothing in src/ knows about them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.distributed

LIMIT_S = 120  # every rank must be gone this long after the start, whatever the fault


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], env: dict[str, str], tmp_path: Path, world: int = 2) -> list[tuple[int | None, str]]:
    """Start `argv` once per rank with torchrun's variables; (exit status or None if it hung, output) per rank.

    Survivors past LIMIT_S are killed, so a hang fails the test instead of stalling the suite.
    """
    port = str(free_port())
    procs, logs = [], []
    for rank in range(world):
        rank_env = os.environ | env
        rank_env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
        rank_env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(world)}
        rank_env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": str(world)}
        rank_env |= {"TORCHELASTIC_RUN_ID": "rspnet-test"}  # torch.distributed.is_torchelastic_launched()
        logs.append((tmp_path / f"rank{rank}.log").open("w+"))
        procs.append(subprocess.Popen(argv, cwd=REPO, env=rank_env, stdout=logs[-1], stderr=subprocess.STDOUT))
    start, codes = time.monotonic(), []
    try:
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(0.1, LIMIT_S - (time.monotonic() - start))))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    return list(zip(codes, outputs))


# -- the mechanism, on plain torch.distributed (gloo): seconds ----------------------------------
RANKS = """
import os, sys, time
import torch.distributed as dist
from rspnet.errors import ArtifactError
from rspnet.utils.distributed import ranks_fail_together

rank, case = int(os.environ["RANK"]), os.environ["CASE"]
dist.init_process_group("gloo")
with ranks_fail_together(lambda e: (str(e), 2), poll_s=0.2):
    if case == "rank 1 fails, rank 0 is busy":
        if rank == 1:
            raise ArtifactError("cannot write x.json: No space left on device")
        time.sleep(300)  # computing, or in an NCCL collective that never notices the peer has left
    elif case == "rank 0 fails on its last write":
        if rank == 0:
            time.sleep(1)  # rank 1 is done by now
            raise ArtifactError("cannot write x.json: No space left on device")
print(f"rank {rank} done", flush=True)
"""


@pytest.mark.parametrize("case", ["rank 1 fails, rank 0 is busy", "rank 0 fails on its last write"])
def test_a_failing_rank_ends_every_rank_with_one_line_naming_it(case: str, tmp_path: Path) -> None:
    start = time.monotonic()
    ranks = launch([sys.executable, "-c", RANKS], {"CASE": case}, tmp_path)
    elapsed = time.monotonic() - start
    failed = 1 if case.startswith("rank 1") else 0
    other = 1 - failed
    assert [code for code, _ in ranks] == [2, 2], ranks  # the failing rank's status, on every rank
    assert elapsed < 60  # the busy rank is not waited for
    message = f"rank {failed} failed: cannot write x.json: No space left on device"
    assert ranks[failed][1].count("rspnet: error:") == 1 and f"rspnet: error: {message}" in ranks[failed][1]
    assert ranks[other][1].count("rspnet: error:") == 1
    assert f"rspnet: error: rank {other} stopped: {message}" in ranks[other][1]
    assert "done" not in ranks[other][1]  # stopped in its work, or (rank 1) in the final barrier: never exits 0


def test_ranks_that_all_succeed_exit_0(tmp_path: Path) -> None:
    ranks = launch([sys.executable, "-c", RANKS], {"CASE": "no fault"}, tmp_path)
    assert [code for code, _ in ranks] == [0, 0], ranks
    assert all(f"rank {r} done" in out and "rspnet: error" not in out for r, (_, out) in enumerate(ranks))


# -- the real CLI: 2 CPU ranks (gloo, trainer.strategy=ddp, launched like torchrun) -----------------
INJECT = """
import os, sys

rank, fault = int(os.environ["RANK"]), os.environ["FAULT"]
if fault.startswith("rank 0 cannot write ") and rank == 0:  # the disk fills up under one of rank 0's atomic writes
    name, replace = fault.rsplit(" ", 1)[1], os.replace

    def full_disk(src, dst, *args, **kwargs):
        if os.path.basename(dst).endswith(name):
            raise OSError(28, "No space left on device")
        return replace(src, dst, *args, **kwargs)

    os.replace = full_disk
if fault == "rank 1 training step raises" and rank == 1:
    from rspnet.lit.search_module import SearchModule

    def broken(self, batch, batch_idx):
        raise RuntimeError("injected fault in training_step")

    SearchModule.training_step = broken

from rspnet.cli import main

sys.argv = ["rspnet", *sys.argv[1:]]
main()
"""
CELL = (
    "stage=cell_search",
    "debug=tiny",
    "model=micro",
    "logger=none",
    "print_config=false",
    "dataset.num_train=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.strategy=ddp",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "failed", "status", "message"),
    [
        # the epoch's checkpoint: rank 1 waits in Lightning's barrier (as after a failed genotype/picture export)
        ("rank 0 cannot write .ckpt", 0, 2, "last.ckpt: No space left on device"),
        # the result writer, after the last collective: rank 1 would finish and exit 0
        ("rank 0 cannot write search.json", 0, 2, "search.json: No space left on device"),
        ("rank 1 training step raises", 1, 1, "RuntimeError: injected fault in training_step"),
    ],
)
def test_cli_ddp_fault_on_one_rank_ends_every_rank(
    fault: str, failed: int, status: int, message: str, tmp_path: Path
) -> None:
    script = tmp_path / "inject.py"
    script.write_text(INJECT)
    argv = [sys.executable, str(script), *CELL, f"paths.output_dir={tmp_path / 'run'}"]
    start = time.monotonic()
    ranks = launch(argv, {"FAULT": fault}, tmp_path)
    assert time.monotonic() - start < LIMIT_S
    assert [code for code, _ in ranks] == [status, status], [(code, out[-2000:]) for code, out in ranks]
    other = 1 - failed
    lines = [[line for line in out.splitlines() if line.startswith("rspnet: error:")] for _, out in ranks]
    assert len(lines[failed]) == 1 and lines[failed][0].startswith(f"rspnet: error: rank {failed} failed: ")
    assert len(lines[other]) == 1 and lines[other][0].startswith(f"rspnet: error: rank {other} stopped: ")
    assert all(message in line[0] and f"rank {failed} failed" in line[0] for line in lines)
    assert not (tmp_path / "run" / "search.json").exists()  # no result of a failed run
