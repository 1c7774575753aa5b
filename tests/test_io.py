"""Atomic artifact writing: failures leave the previous file intact and no temp files."""

from __future__ import annotations

import errno
import json
import os

import pytest

from rspnet.errors import ArtifactError
from rspnet.utils import io


def test_atomic_json_roundtrip(tmp_path):
    path = io.atomic_write_json(tmp_path / "a" / "x.json", {"k": [1, 2.5]})
    assert io.read_json(path, "test") == {"k": [1, 2.5]}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_nan_is_never_written(tmp_path):
    path = tmp_path / "x.json"
    io.atomic_write_json(path, {"v": 1})
    with pytest.raises(ValueError):
        io.atomic_write_json(path, {"v": float("nan")})
    assert json.loads(path.read_text()) == {"v": 1}


def test_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    io.atomic_write_json(path, {"v": 1})

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ArtifactError, match="No space left on device.*intact"):
        io.atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_unwritable_parent_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArtifactError, match="cannot write"):
        io.atomic_write_json(blocker / "sub" / "x.json", {})


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArtifactError, match="bad.json: not valid JSON"):
        io.read_json(bad, "genotype")
    with pytest.raises(ArtifactError, match="genotype file not found"):
        io.read_json(tmp_path / "missing.json", "genotype")
