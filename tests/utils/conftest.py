"""Fixtures of the utils tests: W&B offline for the logger tests, and the W&B offline log reader the W&B
logging tests (tests/utils/test_loggers*.py) check rspnet's runs with.

The reader is a test oracle only: what rspnet writes into W&B (run group, job type, artifact lineage, summaries)
is kept by recent wandb versions only in the binary `run-<id>.wandb` log (LevelDB-style 32 KiB blocks of protobuf
`Record`s). No results tool reads it: experiments.results reads the csv log (`extra_loggers=[csv]`).
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rspnet.utils.loggers import finish_loggers


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline, its home dirs in the test's tmp_path; every open run finished afterwards."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    yield
    finish_loggers()


BLOCK = 32 * 1024
HEADER = 7  # file header: b":W&B" + 2-byte magic + 1-byte version; record header: crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    """Reassembled record payloads of a .wandb log."""
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        if length == 0 and kind == 0:  # zero-filled rest of a block
            pos += left - HEADER
            continue
        chunk, pos = data[pos : pos + length], pos + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """One offline run: {"run": {"id", "group", "job_type"}, "config", "summary", "history": [row, ...],
    "artifacts": [{"name", "type", "digest", "used"}], "metrics": {name: summary kinds}, "complete": bool}
    (complete: the log has the run's exit record, i.e. the run finished and its log is whole).

    An artifact with `used` true is an input of the run (`use_artifact`; offline: recorded with
    use_after_commit, which `wandb sync` turns into the "used by" edge), else an output (`log_artifact`).
    """
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"run": {}, "config": {}, "summary": {}, "history": [], "artifacts": [], "metrics": {}}
    out["complete"] = False
    summary_file = run_dir / "files" / "wandb-summary.json"
    if summary_file.is_file():
        out["summary"] = json.loads(summary_file.read_text())
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        return out
    data = logs[0].read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{logs[0]}: not a W&B run log")
    from wandb.proto import wandb_internal_pb2 as pb  # internal format: only needed for binary logs

    for payload in _chunks(data):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "project": r.project}
            out["config"].update({_key(i): _value(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): _value(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["history"].append({_key(i): _value(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            a = record.artifact
            out["artifacts"].append(
                {"name": a.name, "type": a.type, "digest": a.digest, "used": bool(a.use_after_commit)}
            )
        elif kind == "metric" and record.metric.name:
            s = record.metric.summary
            out["metrics"][record.metric.name] = [k for k in ("min", "max", "mean", "last") if getattr(s, k)]
        elif kind == "exit":
            out["complete"] = True
        elif kind == "summary" and not summary_file.is_file():
            out["summary"].update({_key(i): _value(i.value_json) for i in record.summary.update})
    return out


def read_finished_run(run_dir: Path, timeout_s: float = 10.0) -> dict[str, Any]:
    """`read_offline_run` once the log holds the run's exit record. Offline, wandb's service may still be writing
    (and buffering) the log when `finish()` returns, so a read right after it can miss records, the config
    included. Raises TimeoutError naming the folder when the record does not come within `timeout_s`."""
    from google.protobuf.message import DecodeError  # a record cut short by the writer: read again

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            run = read_offline_run(run_dir)
            if run["complete"]:
                return run
        except DecodeError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: no exit record in the run log after {timeout_s} s (the run did not finish)")
        time.sleep(0.1)
