"""DDP on 2 CPU processes (gloo): rank-consistency check and metrics reduced across ranks."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rspnet.errors import RSPNetError
from rspnet.utils.distributed import assert_same_across_ranks, is_distributed

pytestmark = pytest.mark.distributed

WORLD = 2
NUM_CLASSES = 5


def _free_port() -> int:
    """A TCP port nobody listens on (for the gloo rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, port: int) -> None:
    """Join a 2-rank gloo group on localhost."""
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


def _spawn(fn, tmp_path: Path) -> list[dict]:
    """Run `fn(rank, port, tmp_path)` on 2 processes; return what each rank wrote."""
    mp.spawn(fn, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_assert_same_across_ranks_is_noop_without_ddp() -> None:
    assert not is_distributed()
    assert_same_across_ranks(torch.randn(3, 5), "alpha")


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and targets for 4 images (some ignore pixels, one class absent)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, NUM_CLASSES - 1, (4, 8, 8), generator=g)  # class 4 never in target
    preds = torch.where(
        torch.rand(4, 8, 8, generator=g) < 0.6, target, torch.randint(0, NUM_CLASSES, (4, 8, 8), generator=g)
    )
    target[:, 0, :] = 255
    return preds, target


def _worker(rank: int, port: int, tmp: str) -> None:
    """On each rank: the rank-consistency check (equal, then differing) and SegMetric on half the data."""
    from rspnet.metrics import SegMetric

    _init(rank, port)
    try:
        same = torch.arange(6.0).reshape(2, 3)
        assert_same_across_ranks(same, "alpha")  # equal: passes
        raised = None
        try:
            assert_same_across_ranks(same + rank, "alpha")  # rank 1 differs
        except RSPNetError as e:
            raised = str(e)
        preds, target = _data()
        metric = SegMetric(NUM_CLASSES, ignore_index=255)
        metric.update(preds[rank::WORLD], target[rank::WORLD])  # each rank sees half the images
        out = {k: v.tolist() for k, v in metric.compute().items()}
        Path(tmp, f"rank{rank}.json").write_text(json.dumps({"raised": raised, "metric": out}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_check_alpha_and_reduce_metrics(tmp_path: Path) -> None:
    from rspnet.metrics import SegMetric

    results = _spawn(_worker, tmp_path)
    for res in results:  # both ranks raise together, so none of them hangs in the next collective
        assert res["raised"] is not None and "alpha differs between DDP rank 0 and rank 1" in res["raised"]
    preds, target = _data()
    single = SegMetric(NUM_CLASSES, ignore_index=255)
    single.update(preds, target)
    expected = {k: v.tolist() for k, v in single.compute().items()}
    for res in results:  # the confusion matrix summed over ranks == one process on all images
        assert res["metric"]["miou"] == pytest.approx(expected["miou"], abs=1e-6)
        assert res["metric"]["pixel_acc"] == pytest.approx(expected["pixel_acc"], abs=1e-6)
        assert res["metric"]["iou_per_class"] == pytest.approx(expected["iou_per_class"], abs=1e-6, nan_ok=True)
