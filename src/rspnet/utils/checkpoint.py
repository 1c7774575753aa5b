"""All checkpoint code: atomic IO, RNG state, strict loading, and the self-describing training metadata.

A training checkpoint holds `checkpoint["rspnet"]` (`seg_meta`): what network it is (`net`), the
genotype and macro structure of an rspnet net, the class names/palette and the model/rsp/head
config, so eval, predict and export rebuild the exact network from the file alone
(`rspnet.lit.seg_module.SegModule.from_checkpoint`, from `check_seg_meta`, `network_cfg` and
`stored_architecture`; this module holds the file format only and builds no module). Format history: `rspnet.seg/1` (up to a096c64) has no `net` entry and is
always an rspnet derived net; `rspnet.seg/2` adds `net`, later with `net.name` and `net.config` (the
`net` group entry of a non-searched family such as ENet, `builder: hydra.utils.instantiate`; an older
rspnet refuses those files in one line, as any non-rspnet net). Both load; other versions are one error.

Every load is `torch.load(weights_only=True)` (`read_checkpoint`, also for Lightning's resume through
`AtomicCheckpointIO`), so a checkpoint cannot run code. `stage=export stage.format=safetensors` writes
the `net.*` weights as safetensors with `checkpoint["rspnet"]` as JSON in the header
(`WEIGHTS_FORMAT`); `read_checkpoint` reads it back as a checkpoint with only `state_dict` and `rspnet`.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from rspnet.errors import ArtifactError
from rspnet.models.nets import RSPNET_SPEC, check_rebuildable, is_searched
from rspnet.utils.io import atomic_write_bytes

try:  # the CheckpointIO base lives in lightning_fabric, a hard dependency of pytorch-lightning
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
except ImportError:  # pragma: no cover
    from pytorch_lightning.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)
RNG_KEY = "rspnet_rng"  # top-level checkpoint key of the training module's RNG state
CKPT_FORMAT = "rspnet.seg/2"
READABLE_FORMATS = ("rspnet.seg/1", CKPT_FORMAT)
# config groups that define an rspnet network's shape; stored in (and restored from) the checkpoint
ARCH_GROUPS = ("model", "rsp", "head")
# `net.builder`: how SegModule.from_checkpoint rebuilds the network (None: an injected net it cannot rebuild)
DERIVED = "rspnet.models.derived"  # the searched net, from the stored genotype + macro + model/rsp/head
INSTANTIATE = "hydra.utils.instantiate"  # another `net` group entry, from its stored `net.config`
WEIGHTS_FORMAT = "rspnet.weights/1"  # safetensors header: {"format": WEIGHTS_FORMAT, "rspnet": JSON of the metadata}
SAFETENSORS = ".safetensors"


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

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Resume reads through `read_checkpoint`: weights_only=True whatever this Lightning/torch pair defaults to.

        The file is read to CPU (as Lightning's default `map_location` does); `weights_only` is ignored.
        """
        if Path(str(path)).suffix.lower() == SAFETENSORS:
            raise ArtifactError(
                f"{path}: a {SAFETENSORS} file holds the weights only and cannot resume a run; "
                "resume from a *.ckpt, or start from these weights with train.init_ckpt="
            )
        return read_checkpoint(path, lightning=False)


def _listing(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def class_layers(net: nn.Module) -> list[str]:
    """Names of the submodules with one output channel per class (each head lists its own in `class_layers`)."""
    return [
        f"{name}.{layer}" if name else layer
        for name, module in net.named_modules()
        for layer in getattr(module, "class_layers", ())
    ]


def under(key: str, prefixes: list[str]) -> bool:
    """`key` is a tensor of one of the submodules `prefixes` (`head.classifier` holds `head.classifier.weight`)."""
    return any(key.startswith(f"{p}.") for p in prefixes)


def check_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, skip: tuple[str, ...] = ()
) -> None:
    """One ArtifactError listing missing, unexpected and shape-mismatched keys, if `state` does not fit `module`.

    Called before `load_state_dict`, whose multi-line RuntimeError would otherwise reach the user.
    The tensors of the submodules `skip` are left out on both sides.
    """
    own = {k: v for k, v in module.state_dict().items() if not under(k, list(skip))}
    state = {k: v for k, v in state.items() if not under(k, list(skip))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(
            "shape mismatch: " + _listing([f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in shapes])
        )
    if missing:
        parts.append(f"missing: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected: {_listing(unexpected)}")
    raise ArtifactError(
        f"{source}: weights do not fit this network (different model preset, rsp, head, "
        f"genotype/macro or num_classes?); {'; '.join(parts)}"
    )


def check_seg_meta(
    meta: Any, path: Any, fmt: str = CKPT_FORMAT, groups: tuple[str, ...] = (*ARCH_GROUPS, "dataset", "train")
) -> dict[str, Any]:
    """The `rspnet` metadata of a training checkpoint, checked field by field (one ArtifactError otherwise).

    The genotype and macro inside are checked when the network is rebuilt (Genotype/MacroArch.from_dict).
    """
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("rspnet.seg/"):
        raise ArtifactError(
            f"{path}: not an rspnet training checkpoint (no '{fmt}' metadata); "
            "pass ckpt= a checkpoint written by stage=train"
        )
    if meta["format"] not in READABLE_FORMATS:
        raise ArtifactError(
            f"{path}: checkpoint format {meta['format']} is not one this rspnet reads "
            f"({', '.join(READABLE_FORMATS)}); use the rspnet version that wrote it"
        )

    def bad(field: str, msg: str) -> ArtifactError:
        return ArtifactError(
            f"{path}: rspnet metadata field '{field}': {msg}; the checkpoint is damaged or not written by stage=train"
        )

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
    if classes is not None and (
        not isinstance(classes, list) or len(classes) != n or not all(isinstance(c, str) for c in classes)
    ):
        raise bad("classes", f"expected {n} class names")
    palette = meta.get("palette")
    if palette is not None and (
        not isinstance(palette, list)
        or not all(
            isinstance(c, list)
            and len(c) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
            for c in palette
        )
    ):
        raise bad("palette", "expected a list of [r, g, b] colours (ints 0..255)")
    _check_net(meta, path, bad)
    return meta


def _check_net(meta: dict[str, Any], path: Any, bad: Callable[[str, str], ArtifactError]) -> None:
    """The `net` entry names a network SegModule.from_checkpoint rebuilds, with what it is rebuilt from."""
    net = meta.get("net", {"builder": DERIVED})  # rspnet.seg/1: always a derived net
    if not isinstance(net, dict) or not isinstance(net.get("class", ""), str):
        raise bad("net", "expected an object")
    if net.get("builder") == INSTANTIATE:  # a `net` group entry (net=enet ...): rebuilt from net.config
        check_rebuildable(net, str(path))
        return
    if net.get("builder") != DERIVED:
        raise ArtifactError(
            f"{path}: holds a {net.get('class') or 'non-rspnet'} network, not one of the net group; "
            "eval/predict/export rebuild only those (load its net.* weights with "
            "rspnet.utils.checkpoint.net_state into that network yourself)"
        )
    for key in ("genotype", "macro"):
        if not isinstance(meta.get(key), dict):
            raise bad(key, "expected an object")


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


# -- the training checkpoint: metadata, reading, strict loading, rebuilding ---------------------
def seg_meta(
    cfg: DictConfig,
    net: nn.Module,
    num_classes: int,
    *,
    genotype: dict | None = None,
    macro: dict | None = None,
    classes: list[str] | None = None,
    palette: list | None = None,
    class_weights: list[float] | None = None,
    selection: dict[str, Any] | None = None,
    description: str | None = None,
    net_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`checkpoint["rspnet"]` for `net`: an rspnet derived net (genotype + macro given), a `net` group entry
    (`net_spec`, its conf/net entry: rebuilt from it on load) or any other network (not rebuilt)."""
    from rspnet.architecture import arch_provenance

    derived = genotype is not None and macro is not None
    entry = net_spec is not None and not is_searched(net_spec) and not derived
    kind = type(net)
    return {
        "format": CKPT_FORMAT,
        # what network the weights are for and how SegModule.from_checkpoint rebuilds it (builder None: it cannot)
        "net": {
            "name": "rspnet" if derived else (net_spec or {}).get("name"),
            "builder": DERIVED if derived else (INSTANTIATE if entry else None),
            "class": f"{kind.__module__}.{kind.__qualname__}",
            "description": description,
            "config": dict(net_spec) if entry else None,
        },
        "genotype": genotype,
        "macro": macro,
        "num_classes": int(num_classes),
        "classes": list(classes) if classes is not None else [str(i) for i in range(int(num_classes))],
        "palette": [list(map(int, c)) for c in palette] if palette is not None else None,
        "config": {g: OmegaConf.to_container(cfg[g], resolve=True) for g in (*ARCH_GROUPS, "dataset", "train")},
        "params": sum(p.numel() for p in net.parameters()),
        "class_weights": list(class_weights) if class_weights is not None else None,
        "selection": selection,  # which split picked the checkpoint (train.select)
        # searched | random | preset per artifact (None = legacy file without the key, or not an rspnet net)
        "arch_provenance": arch_provenance(genotype, macro) if derived else {"genotype": None, "macro": None},
    }


def net_name(meta: dict[str, Any]) -> str | None:
    """The `net` group entry a checkpoint's network is (`rspnet` for derived nets of any format), None if none."""
    net = meta.get("net", {"builder": DERIVED})
    return net.get("name") or ("rspnet" if net.get("builder") == DERIVED else None)


def read_checkpoint(path: str | Path, lightning: bool = True) -> dict[str, Any]:
    """torch.load(weights_only=True) a Lightning checkpoint on CPU (or `read_safetensors` a *.safetensors file).

    One clear ArtifactError for a missing, corrupt or unsafe (pickled code) file. `lightning=False` accepts
    any dict (the `.temp.ckpt` a `ddp_spawn` rank hands its results back in holds a bare state dict).
    """
    path = Path(str(path))
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path}")
    if path.suffix.lower() == SAFETENSORS:
        return read_safetensors(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors come in many types
        raise ArtifactError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {(str(e).splitlines() or ['empty or truncated file'])[0][:200]})"
        ) from e
    if not isinstance(ckpt, dict) or (lightning and "state_dict" not in ckpt):
        raise ArtifactError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def safetensors_bytes(state: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """A network's `state` (keys without `net.`) as safetensors, `meta` (`checkpoint["rspnet"]`) as JSON in the header."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return save(tensors, metadata={"format": WEIGHTS_FORMAT, "rspnet": json.dumps(meta)})


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """A `safetensors_bytes` file as a checkpoint dict: `state_dict` (`net.*` keys) and `rspnet` (the metadata).

    A file that is not safetensors, or lacks the rspnet header metadata, is one ArtifactError naming it.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {f"net.{k}": f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(
            f"{path}: cannot read safetensors file ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
        ) from e
    hint = f"export it with stage=export stage.format=safetensors (header format {WEIGHTS_FORMAT})"
    if header.get("format") != WEIGHTS_FORMAT:
        raise ArtifactError(
            f"{path}: safetensors header format is {header.get('format')!r}, not {WEIGHTS_FORMAT!r}; "
            f"it has no rspnet metadata to rebuild the network from; {hint}"
        )
    try:
        meta = json.loads(header.get("rspnet", ""))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: safetensors header metadata 'rspnet' is missing or not JSON ({e}); {hint}") from e
    return {"state_dict": state, "rspnet": meta}


def net_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The `net.*` weights of a checkpoint with the prefix stripped."""
    return {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def load_net_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str, skip: tuple[str, ...] = ()) -> None:
    """Strict load: any missing, unexpected or shape-mismatched key is one ArtifactError listing them.

    The submodules `skip` (e.g. `class_layers(net)`) keep their own weights; everything else must fit.
    """
    check_state_dict(net, state, source, skip)
    if not skip:
        net.load_state_dict(state, strict=True)
        return
    kept = {k: v for k, v in state.items() if not under(k, list(skip))}
    missing, unexpected = net.load_state_dict(kept, strict=False)
    assert not unexpected and all(under(k, list(skip)) for k in missing), (missing, unexpected)


def _arch_diff(user: DictConfig, stored: dict) -> list[str]:
    """`group.key` entries where the user's model/rsp/head differ from the checkpoint's."""
    diffs = []
    for g in ARCH_GROUPS:
        mine = OmegaConf.to_container(user[g], resolve=True) if g in user else {}
        for k in sorted(set(mine) | set(stored.get(g, {}))):
            if mine.get(k) != stored.get(g, {}).get(k):
                diffs.append(f"{g}.{k}={stored.get(g, {}).get(k)!r} (config: {mine.get(k)!r})")
    return diffs


def stored_architecture(meta: dict[str, Any]) -> tuple[Any, Any]:
    """The (Genotype, MacroArch) of a checked (`check_seg_meta`) derived net's metadata; (None, None) for other nets."""
    from rspnet.genotype import Genotype, MacroArch

    if (meta.get("net") or {"builder": DERIVED}).get("builder") != DERIVED:
        return None, None
    return (
        Genotype.from_dict(meta["genotype"], "checkpoint genotype"),
        MacroArch.from_dict(meta["macro"], "checkpoint macro"),
    )


def network_cfg(cfg: DictConfig | None, meta: dict[str, Any], path: str | Path) -> DictConfig:
    """`cfg` (or the stored config) with the checkpoint's network: its model/rsp/head groups and `net` entry."""
    stored = meta["config"]
    net = meta.get("net") or {}  # rspnet.seg/1: a derived net
    spec = net["config"] if net.get("builder") == INSTANTIATE else RSPNET_SPEC
    if cfg is None:
        cfg = OmegaConf.create(stored)
    else:
        diffs = _arch_diff(cfg, stored) if is_searched(spec) else []
        mine = cfg.get("net")
        if mine is not None and mine.get("name") != spec["name"]:
            diffs.append(f"net={spec['name']} (config: net={mine.get('name')})")
        if diffs:
            log.warning(
                "%s: using the checkpoint's network config, which differs from the given one: %s",
                path,
                "; ".join(diffs),
            )
        cfg = cfg.copy()
    with open_dict(cfg):
        for g in ARCH_GROUPS:
            cfg[g] = OmegaConf.create(stored[g])
        cfg.net = OmegaConf.create(spec)
    return cfg
