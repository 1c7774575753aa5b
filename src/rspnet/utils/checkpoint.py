"""Checkpoint helpers shared by the search and training stages: atomic checkpoint IO, RNG state."""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rspnet.errors import ArtifactError
from rspnet.utils.io import atomic_write_bytes

try:  # the CheckpointIO base lives in lightning_fabric, a hard dependency of pytorch-lightning
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
except ImportError:  # pragma: no cover
    from pytorch_lightning.plugins.io import TorchCheckpointIO

RNG_KEY = "rspnet_rng"  # top-level checkpoint key of the training module's RNG state


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through `atomic_write_bytes`: temp file in the same folder, fsync, os.replace.

    Lightning's own writer stages the file in the system temp dir and `shutil.move`s it, which
    is a non-atomic copy when the output dir is on another filesystem (NFS, scratch); a kill
    then leaves half a `last.ckpt`. A full disk becomes one ArtifactError and the old file stays.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Serialise in memory, then write atomically (`storage_options` is not supported)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())


def _listing(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """One ArtifactError listing missing, unexpected and shape-mismatched keys, if `state` does not fit `module`.

    Called before `load_state_dict`, whose multi-line RuntimeError would otherwise reach the user.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append("shape mismatch: " + _listing([f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in shapes]))
    if missing:
        parts.append(f"missing: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected: {_listing(unexpected)}")
    raise ArtifactError(f"{source}: weights do not fit this network (different model preset, rsp, head, "
                        f"genotype/macro or num_classes?); {'; '.join(parts)}")


def check_seg_meta(meta: Any, path: Any, fmt: str, groups: tuple[str, ...]) -> dict[str, Any]:
    """The `rspnet` metadata of a training checkpoint, checked field by field (one ArtifactError otherwise).

    The genotype and macro inside are checked when the network is rebuilt (Genotype/MacroArch.from_dict).
    """
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ArtifactError(f"{path}: not an rspnet training checkpoint (no '{fmt}' metadata); "
                            "pass ckpt= a checkpoint written by stage=train")

    def bad(field: str, msg: str) -> ArtifactError:
        return ArtifactError(f"{path}: rspnet metadata field '{field}': {msg}; the checkpoint is damaged or "
                             "not written by stage=train")

    config = meta.get("config")
    if not isinstance(config, dict):
        raise bad("config", "expected an object")
    for group in groups:
        if not isinstance(config.get(group), dict):
            raise bad(f"config.{group}", "expected an object")
    n = meta.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 65536:
        raise bad("num_classes", f"expected an int in 1..65536, got {n!r}")
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != n or not all(isinstance(c, str) for c in classes)):
        raise bad("classes", f"expected {n} class names")
    palette = meta.get("palette")
    if palette is not None and (not isinstance(palette, list) or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
            for c in palette)):
        raise bad("palette", "expected a list of [r, g, b] colours (ints 0..255)")
    for key in ("genotype", "macro"):
        if not isinstance(meta.get(key), dict):
            raise bad(key, "expected an object")
    return meta


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states as plain lists/tensors.

    Plain types only: Lightning loads checkpoints with torch.load(weights_only=True).
    Restoring them reproduces the shuffle order and the augmentations after a resume.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` saved (CUDA states only when the device count matches)."""
    random.setstate(_as_python_state(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_python_state(state: Any) -> tuple:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
