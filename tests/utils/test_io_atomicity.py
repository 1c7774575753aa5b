"""Artifacts and checkpoints are written atomically: a crash or SIGKILL mid-write leaves the old
file or the new one, never a partial file; a full disk is one clear error with the old file intact."""

from __future__ import annotations

import errno
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError
from rspnet.genotype import Genotype
from rspnet.utils.checkpoint import AtomicCheckpointIO
from rspnet.utils.io import atomic_write_json
from tests.conftest import OPS, REPO, cli_env

pytestmark = pytest.mark.reliability

# each writer loop alternates two large versions (0 and 1) of the same file until it is killed;
# the data are built once, so nearly all of the loop's time is spent writing (where a kill must land)
N = 2_000_000
WRITERS = {
    "json": "import json\nfrom rspnet.utils.io import atomic_write_text\n"
    f"texts = [json.dumps({{'version': v, 'payload': [v] * {N}}}) for v in (0, 1)]\n"
    "write = lambda v: atomic_write_text(path, texts[v])",
    "checkpoint": "import torch\nfrom rspnet.utils.checkpoint import AtomicCheckpointIO\nio = AtomicCheckpointIO()\n"
    f"ckpts = [{{'version': v, 'w': torch.full(({N},), float(v))}} for v in (0, 1)]\n"
    "write = lambda v: io.save_checkpoint(ckpts[v], path)",
}
LOOP = "import sys\npath = sys.argv[1]\n{writer}\nv = 0\nwhile True:\n    write(v)\n    print(v, flush=True)\n    v = 1 - v\n"
ROUNDS = {"json": 5, "checkpoint": 2}


def _read_version(kind: str, path: Path) -> int:
    """Version in a complete file; raises if the file is partial."""
    if kind == "json":
        doc = json.loads(path.read_text())
        assert doc["payload"] == [doc["version"]] * N
        return int(doc["version"])
    ckpt = torch.load(path, weights_only=True)
    assert torch.equal(ckpt["w"], torch.full((N,), float(ckpt["version"])))
    return int(ckpt["version"])


@pytest.mark.parametrize(
    "kind", ["json", pytest.param("checkpoint", marks=pytest.mark.slow)]
)  # slow: torch import per round
def test_sigkill_during_writes_leaves_a_complete_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / ("artifact.json" if kind == "json" else "last.ckpt")
    rng = random.Random(0)
    code = LOOP.format(writer=WRITERS[kind])
    for _ in range(ROUNDS[kind]):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline()  # one complete write happened
            time.sleep(rng.uniform(0.0, 0.2))  # land the kill anywhere inside a later write
        finally:
            proc.kill()
            proc.wait()
        assert _read_version(kind, path) in (0, 1)


def _die_half_way(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make Path.<method> write half its data, then crash like a kill (BaseException, not an error)."""
    original = getattr(Path, method)

    def half(self: Path, data):  # type: ignore[no-untyped-def]
        original(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, method, half)


def test_crash_mid_write_keeps_the_previous_genotype(tmp_path: Path, monkeypatch) -> None:
    path = Genotype.from_ops(OPS, rsp=True).save(tmp_path / "genotype.json")
    before = path.read_bytes()
    other = Genotype.from_ops(["skip_connect"] * 3, rsp=False)
    with monkeypatch.context() as m:
        _die_half_way(m, "write_text")
        with pytest.raises(KeyboardInterrupt):
            other.save(path)
    assert path.read_bytes() == before
    assert Genotype.load(path).ops == Genotype.from_ops(OPS, rsp=True).ops != other.ops  # the old genotype, not the new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json"]  # no temp file left


def test_crash_mid_checkpoint_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 0, "state_dict": {"w": torch.zeros(1000)}}, path)
    with monkeypatch.context() as m:
        _die_half_way(m, "write_bytes")
        with pytest.raises(KeyboardInterrupt):
            AtomicCheckpointIO().save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(1000)}}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def _disk_full(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    original = getattr(Path, method)

    def full(self: Path, data):  # type: ignore[no-untyped-def]
        original(self, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, method, full)


def test_disk_full_is_one_clear_error_and_keeps_artifact_and_checkpoint(tmp_path: Path, monkeypatch) -> None:
    json_path = atomic_write_json(tmp_path / "metrics.json", {"miou": 0.5})
    ckpt_path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, ckpt_path)
    with monkeypatch.context() as m:
        _disk_full(m, "write_text")
        with pytest.raises(ArtifactError, match=r"metrics\.json: No space left on device; the previous file") as info:
            atomic_write_json(json_path, {"miou": 0.9})
    assert "\n" not in str(info.value)
    with monkeypatch.context() as m:
        _disk_full(m, "write_bytes")
        with pytest.raises(ArtifactError, match=r"last\.ckpt: No space left on device"):
            AtomicCheckpointIO().save_checkpoint({"epoch": 1}, ckpt_path)
    assert json.loads(json_path.read_text()) == {"miou": 0.5}
    assert torch.load(ckpt_path, weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "metrics.json"]


def test_training_checkpoints_go_through_the_atomic_writer(
    tmp_path: Path, make_cfg, monkeypatch, searched_genotype_file: Path
) -> None:
    from rspnet.stages.train import run as run_train
    from tests.conftest import TRAIN

    written: list[str] = []
    original = AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(
        AtomicCheckpointIO,
        "save_checkpoint",
        lambda self, ckpt, path, storage_options=None: (written.append(Path(path).name), original(self, ckpt, path))[1],
    )
    run_train(make_cfg(*TRAIN, "trainer.max_epochs=1", f"genotype={searched_genotype_file}", out=tmp_path / "run"))
    assert "last.ckpt" in written and any(name.startswith("best") for name in written)


def test_disk_full_at_a_search_checkpoint_keeps_the_previous_one(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """Epoch 2's checkpoint hits a full disk (simulated: its temp file write stops with ENOSPC): the run
    stops with one ArtifactError naming the file; epoch 1's checkpoint stays complete and resumable."""
    from rspnet.stages import run_stage as run
    from tests.conftest import CELL

    out = tmp_path / "run"
    real_write = Path.write_bytes
    writes = [0]

    def write_bytes(self: Path, data: bytes) -> int:
        writes[0] += self.name.startswith(".last.ckpt.")  # the atomic writer's temp files of last.ckpt
        if self.name.startswith(".last.ckpt.") and writes[0] == 2:  # epoch 2's
            real_write(self, data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(ArtifactError) as info:
        run(make_cfg(*CELL, "trainer.max_epochs=2", out=out))
    msg = str(info.value)
    assert "\n" not in msg and str(out / "checkpoints" / "last.ckpt") in msg and "No space left on device" in msg
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and "net.alpha" in ckpt["state_dict"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]  # no temp file
    monkeypatch.undo()  # disk freed: the run resumes from epoch 1's checkpoint
    run(make_cfg(*CELL, "trainer.max_epochs=2", "ckpt_path=last", out=out))
    assert json.loads((out / "genotype.json").read_text())["search"]["epochs"] == 2
