"""Atomic artifact writing: failures leave the previous file intact and no temp files."""

from __future__ import annotations

import errno
import json
import os
import stat

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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_artifacts_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = io.atomic_write_json(tmp_path / "x.json", {"v": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("")  # what a normal open() creates under the same umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(a, b):
        events.append("replace")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    io.atomic_write_json(tmp_path / "x.json", {"v": 1})
    assert events == ["file", "replace", "dir"]


def test_a_folder_that_cannot_be_fsynced_is_no_error(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert io.read_json(io.atomic_write_json(tmp_path / "x.json", {"v": 1}), "test") == {"v": 1}
