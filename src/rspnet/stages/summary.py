"""`stage=summary`: parameter count (by part) and GFLOPs of any preset, without training.

With net=enet (or another `net` entry built from its keys alone): its parameters and GFLOPs (no parts).

The network is built on the `meta` device (no memory, no init cost), so even the paper preset
at 1024x2048 is summarised in seconds on a laptop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rspnet.errors import ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.models.nets import build_net, is_searched, net_spec
from rspnet.provenance import of_file
from rspnet.resources import genotype_path, shipped_genotypes
from rspnet.utils.config import output_dir
from rspnet.utils.io import atomic_write_json

log = logging.getLogger(__name__)
PAPER_GENOTYPE = genotype_path("paper_like")
PARTS = ("stem", "trellis", "head")
DEFAULT_MACRO = "default_macro"  # `macro_arch=default_macro`: the preset trellis
REQUIRED = "REQUIRED"
GFLOPS_CONVENTION = "torch.utils.flop_counter: 2 FLOPs per multiply-accumulate (GFLOPs = 2 x GMACs), batch 1"  # recipes set `genotype: "REQUIRED: ..."` (a `???` cannot override the root null)


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


def check_macro(macro: MacroArch, cfg: DictConfig, source: str) -> MacroArch:
    """ConfigError naming the file if its layers/scales differ from `model.layers`/`model.scales`."""
    layers, scales = int(cfg.model.layers), [int(s) for s in cfg.model.scales]
    if macro.layers != layers or list(macro.scales) != scales:
        raise ConfigError(
            f"{source}: layers={macro.layers} scales={list(macro.scales)} do not match "
            f"model.layers={layers} model.scales={scales} (model={cfg.model.name}); pass the "
            "macro.json searched for this model, or set model.layers/model.scales to match it"
        )
    return macro


def load_architecture(cfg: DictConfig, default_genotype: Path | None = PAPER_GENOTYPE) -> tuple[Genotype, MacroArch]:
    """Genotype from `genotype=` (else `default_genotype`), macro from `macro_arch=` (else default_macro)."""
    genotype = Genotype.load(artifact_arg(cfg, "genotype") or default_genotype)
    macro_file = artifact_arg(cfg, "macro_arch")
    macro = check_macro(MacroArch.load(macro_file), cfg, macro_file) if macro_file else default_macro(cfg)
    return genotype, macro


def arch_provenance(cfg: DictConfig, default_genotype: Path | None = PAPER_GENOTYPE) -> dict[str, str]:
    """{"genotype": ..., "macro": ...}: searched | random | preset | unknown (rspnet.provenance)."""
    return {
        "genotype": of_file(artifact_arg(cfg, "genotype") or default_genotype),
        "macro": of_file(artifact_arg(cfg, "macro_arch"), default="preset"),
    }


def param_counts(net: nn.Module) -> dict[str, int]:
    """Parameter count per top-level part of a DerivedNet (stem, trellis, head)."""
    return {part: sum(p.numel() for p in getattr(net, part).parameters()) for part in PARTS}


def count_gflops(net: nn.Module, input_size: tuple[int, int]) -> float:
    """GFLOPs of one forward pass at batch 1, on a tensor on the model's device.

    Convention: `torch.utils.flop_counter` counts 2 FLOPs per multiply-accumulate, so this is
    2x the "GMACs" that some papers (and fvcore) report as FLOPs. Only matmul/conv-type ops are counted.
    """
    device = next(net.parameters()).device
    x = torch.zeros(1, 3, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(x)
    return counter.get_total_flops() / 1e9


def summarize(cfg: DictConfig, genotype: Genotype, macro: MacroArch, flops: bool = True) -> dict:
    """The summary dict for `cfg.model`/`cfg.rsp`/`cfg.head` at `dataset.crop_size` (built on meta)."""
    with torch.device("meta"):
        net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
    parts = param_counts(net)
    size = tuple(int(v) for v in cfg.dataset.crop_size)
    gflops = count_gflops(net, size) if flops else None
    return {
        "params": sum(parts.values()),
        "params_by_part": parts,
        "gflops": round(gflops, 3) if gflops is not None else None,
        "gmacs": round(gflops / 2, 3) if gflops is not None else None,
        "gflops_convention": GFLOPS_CONVENTION,
        "input_size": list(size),
        "model": str(cfg.model.name),
        "head": str(cfg.head.name),
        "rsp": bool(cfg.rsp.enabled),
        "layers": macro.layers,
        "cells_per_node": int(cfg.model.cells_per_node),
        "genotype_ops": genotype.ops,
    }


def summarize_family(cfg: DictConfig, spec: dict) -> dict:
    """The summary of a `net` group entry built from its keys alone (net=enet ...), on meta, at `dataset.crop_size`."""
    with torch.device("meta"):
        net = build_net(cfg, spec, int(cfg.dataset.num_classes))
    size = tuple(int(v) for v in cfg.dataset.crop_size)
    gflops = count_gflops(net, size)
    return {
        "net": spec["name"],
        "params": sum(p.numel() for p in net.parameters()),
        "gflops": round(gflops, 3),
        "gmacs": round(gflops / 2, 3),
        "gflops_convention": GFLOPS_CONVENTION,
        "input_size": list(size),
        "num_classes": int(cfg.dataset.num_classes),
    }


def run(cfg: DictConfig) -> dict:
    """Write DIR/summary.json: {"params", "params_by_part", "gflops", "input_size", ...}."""
    out = output_dir(cfg)
    spec = net_spec(cfg)
    if is_searched(spec):
        summary = summarize(cfg, *load_architecture(cfg)) | {"arch_provenance": arch_provenance(cfg)}
        prov = summary["arch_provenance"]
        what = f"model={summary['model']} head={summary['head']} rsp={'on' if summary['rsp'] else 'off'}"
        arch = f" (architecture: genotype {prov['genotype']}, macro {prov['macro']})"
    else:
        summary, what, arch = summarize_family(cfg, spec), f"net={spec['name']}", ""
    atomic_write_json(out / "summary.json", summary)
    log.info(
        "%s: %.2fM params, %.2f GFLOPs at %s%s",
        what,
        summary["params"] / 1e6,
        summary["gflops"],
        summary["input_size"],
        arch,
    )
    return {**summary, "summary": str(out / "summary.json")}
