"""Architecture inputs: the `genotype=` / `macro_arch=` files, loaded, checked, and where they came from.

One function each: `artifact_arg` (the file an option names), `load_macro` (the macro file else
default_macro, checked against the model preset), `load_architecture` (both), `provenance` /
`arch_provenance` (where an artifact came from).

Provenance is `"provenance"` at the top of genotype.json / macro.json. Values: `searched` (written
by a search stage), `random` (random sampling baseline), `preset` (hand-made or calibrated: the
shipped `paper_like` genotype, `default_macro`). Files without the field are read by their
`search` block (older runs), else `unknown`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ArtifactError, ConfigError
from rspnet.genotype import PROVENANCES, Genotype, MacroArch
from rspnet.models.derived import default_macro
from rspnet.models.nets import build_net, is_searched, net_spec
from rspnet.resources import genotype_path, shipped_genotypes
from rspnet.utils.io import read_json

PAPER_GENOTYPE = genotype_path("paper_like")
DEFAULT_MACRO = "default_macro"  # `macro_arch=default_macro`: the preset trellis
REQUIRED = "REQUIRED"  # recipes set `genotype: "REQUIRED: ..."` (a `???` cannot override the root null)
UNKNOWN = "unknown"


def artifact_arg(cfg: DictConfig, key: str) -> str | None:
    """The file given as `genotype=`/`macro_arch=`; None = none (default_macro).

    A shipped genotype may be named (`genotype=paper_like`), the preset trellis chosen with
    `macro_arch=default_macro`.
    """
    value = cfg.get(key)
    if value in (None, ""):
        return None
    value = str(value)
    if value.startswith(REQUIRED):
        raise ConfigError(f"option {key} is required by this recipe: {value.split(':', 1)[-1].strip()}")
    if key == "genotype" and not Path(value).exists() and value in shipped_genotypes():
        return str(genotype_path(value))
    if key == "macro_arch" and value == DEFAULT_MACRO:
        return None  # the preset trellis, chosen explicitly
    return value


def check_macro(macro: MacroArch, cfg: DictConfig, source: str, hint: str | None = None) -> MacroArch:
    """ConfigError naming the file if its layers/scales differ from `model.layers`/`model.scales`."""
    layers, scales = int(cfg.model.layers), [int(s) for s in cfg.model.scales]
    if macro.layers != layers or list(macro.scales) != scales:
        raise ConfigError(
            f"{source}: layers={macro.layers} scales={list(macro.scales)} do not match "
            f"model.layers={layers} model.scales={scales} (model={cfg.model.name}); "
            + (hint or "pass the macro.json searched for this model, or set model.layers/model.scales to match it")
        )
    return macro


def load_macro(cfg: DictConfig, path: str | Path | None, hint: str | None = None) -> MacroArch:
    """The macro file at `path` (checked against the model preset), else default_macro for `cfg.model`."""
    if not path:
        return default_macro(cfg)
    return check_macro(MacroArch.load(path), cfg, str(path), hint)


def load_architecture(cfg: DictConfig, default_genotype: Path | None = PAPER_GENOTYPE) -> tuple[Genotype, MacroArch]:
    """Genotype from `genotype=` (else `default_genotype`), macro from `macro_arch=` (else default_macro)."""
    genotype = Genotype.load(artifact_arg(cfg, "genotype") or default_genotype)
    return genotype, load_macro(cfg, artifact_arg(cfg, "macro_arch"))


def _of_dict(d: Any) -> str:
    value = d.get("provenance")
    if value in PROVENANCES:
        return str(value)
    search = d.get("search") if isinstance(d.get("search"), dict) else {}
    if search.get("source") == "default_macro" or "not searched" in str(search.get("method", "")):
        return "preset"
    epochs = search.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 and search.get("dataset"):
        return "searched"  # written by a search stage before the field existed
    return UNKNOWN


def provenance(artifact: Any, default: str = UNKNOWN) -> str:
    """Provenance of a genotype/macro: a loaded dict, or its file (`default` when no file is given).

    Anything else (a dict-less value, a missing or broken file: reported where it is loaded) is `unknown`.
    """
    if isinstance(artifact, (str, Path)) or artifact is None:
        if not artifact:
            return default
        try:
            artifact = read_json(artifact, "architecture")
        except ArtifactError:
            return UNKNOWN
    return _of_dict(artifact) if isinstance(artifact, dict) else UNKNOWN


def arch_provenance(genotype: Any, macro: Any, no_macro: str = UNKNOWN) -> dict[str, str]:
    """`{"genotype": ..., "macro": ...}` (train.json, metrics.json, checkpoints, pipeline.json) of dicts or files.

    `no_macro`: the macro's provenance when none is given (`preset` where that means default_macro).
    """
    return {"genotype": provenance(genotype), "macro": provenance(macro, default=no_macro)}


def cfg_provenance(cfg: DictConfig, default_genotype: Path | None = PAPER_GENOTYPE) -> dict[str, str]:
    """`arch_provenance` of the files `load_architecture(cfg)` reads (no macro file: default_macro, `preset`)."""
    genotype = artifact_arg(cfg, "genotype") or default_genotype
    return arch_provenance(genotype, artifact_arg(cfg, "macro_arch"), no_macro="preset")


def search_epochs(path: str | Path | None) -> int | None:
    """`search.epochs` of an artifact file (the epochs its search ran), None if unknown."""
    if not path:
        return None
    try:
        epochs = read_json(path, "architecture").get("search", {}).get("epochs")
    except (ArtifactError, AttributeError):
        return None
    return int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def configured_net(cfg: DictConfig, num_classes: int) -> nn.Module:
    """The network of `cfg`'s `net` entry with fresh weights: the searched one from `genotype=` /
    `macro_arch=` (`load_architecture`), any other family from its own keys."""
    spec = net_spec(cfg)
    return build_net(cfg, spec, num_classes, *(load_architecture(cfg) if is_searched(spec) else ()))
