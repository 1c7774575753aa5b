"""Atomic artifact writing: a kill never leaves a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rspnet.errors import ArtifactError

# (folder, name) -> action to run just before the first artifact is written under folder
_PENDING: dict[tuple[Path, str], Callable[[], None]] = {}


def before_first_write(folder: str | os.PathLike, action: Callable[[], None], name: str = "config") -> None:
    """Run `action` once, just before the first atomic write under `folder`.

    The CLI saves `config.yaml` this way, so a run that stops on bad input before writing
    anything leaves a previous run's folder byte-identical.
    """
    _PENDING[(Path(folder).resolve(), name)] = action


def is_pending(folder: str | os.PathLike, name: str = "config") -> bool:
    """True while `folder`'s action `name` waits for the first write (nothing was written there yet)."""
    return (Path(folder).resolve(), name) in _PENDING


def take_pending(folder: str | os.PathLike, name: str = "config") -> Callable[[], None] | None:
    """Remove and return the action still pending for `folder` (None if it ran or none was set)."""
    return _PENDING.pop((Path(folder).resolve(), name), None)


def _run_pending(path: Path) -> None:
    """Run (once, outermost folder first) the pending actions of the folders that contain `path`."""
    if not _PENDING:
        return
    target = path.resolve()
    for key in sorted((k for k in _PENDING if k[0] in target.parents), key=lambda k: len(k[0].parts)):
        action = _PENDING.pop(key, None)
        if action is not None:
            action()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (artifact names, run identity, zoo checksums)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_temp(folder: Path, name: str) -> Path:
    """An empty new `.<name>.<random>.tmp` in `folder`, created like `open()` creates files.

    Mode 0666 minus the umask (and a shared folder's default ACL), unlike `tempfile.mkstemp`'s 0600:
    artifacts stay readable to the group on shared project dirs.
    """
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        with contextlib.suppress(FileExistsError):
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; best effort (some OSes/filesystems cannot open or fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write to a temp file in the same folder, fsync, rename over `path`, fsync the folder."""
    path = Path(path)
    _run_pending(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path.parent, path.name)
    except OSError as e:
        raise ArtifactError(f"cannot write {path}: {e.strerror or e}; check the output dir is writable") from e
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write {path}: {e.strerror or e}; the previous file (if any) is intact") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write `text` to `path`."""
    return _atomic(path, lambda p: p.write_text(text))


def json_safe(value: Any) -> Any:
    """`value` with NaN/inf floats as None (JSON artifacts never hold them)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as pretty JSON (NaN/inf are rejected, never written)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write raw bytes (pictures, ONNX files)."""
    return _atomic(path, lambda p: p.write_bytes(data))


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON artifact, turning I/O and syntax errors into one clear ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read {what} file ({e})") from e
