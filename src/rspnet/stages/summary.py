"""`stage=summary`: parameter count (by part) and GFLOPs of any preset, without training.

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

from rspnet.genotype import Genotype, MacroArch
from rspnet.models.derived import build_derived, default_macro
from rspnet.utils.config import output_dir
from rspnet.utils.io import atomic_write_json

log = logging.getLogger("rspnet")
REPO = Path(__file__).resolve().parents[3]
PAPER_GENOTYPE = REPO / "experiments" / "genotypes" / "paper_like.json"
PARTS = ("stem", "trellis", "head")


def load_architecture(cfg: DictConfig, default_genotype: Path | None = PAPER_GENOTYPE) -> tuple[Genotype, MacroArch]:
    """Genotype from `genotype=` (else `default_genotype`), macro from `macro_arch=` (else default_macro)."""
    genotype = Genotype.load(cfg.genotype if cfg.get("genotype") else default_genotype)
    macro = MacroArch.load(cfg.macro_arch) if cfg.get("macro_arch") else default_macro(cfg)
    return genotype, macro


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
        net = build_derived(cfg, genotype, macro, int(cfg.dataset.num_classes))
    parts = param_counts(net)
    size = tuple(int(v) for v in cfg.dataset.crop_size)
    gflops = count_gflops(net, size) if flops else None
    return {
        "params": sum(parts.values()),
        "params_by_part": parts,
        "gflops": round(gflops, 3) if gflops is not None else None,
        "gmacs": round(gflops / 2, 3) if gflops is not None else None,
        "gflops_convention": "torch.utils.flop_counter: 2 FLOPs per multiply-accumulate (GFLOPs = 2 x GMACs), batch 1",
        "input_size": list(size),
        "model": str(cfg.model.name),
        "head": str(cfg.head.name),
        "rsp": bool(cfg.rsp.enabled),
        "layers": macro.layers,
        "cells_per_node": int(cfg.model.cells_per_node),
        "genotype_ops": genotype.ops,
    }


def run_summary(cfg: DictConfig) -> dict:
    """Write DIR/summary.json: {"params", "params_by_part", "gflops", "input_size", ...}."""
    out = output_dir(cfg)
    summary = summarize(cfg, *load_architecture(cfg))
    atomic_write_json(out / "summary.json", summary)
    msg = (f"model={summary['model']} head={summary['head']} rsp={'on' if summary['rsp'] else 'off'}: "
           f"{summary['params'] / 1e6:.2f}M params, {summary['gflops']:.2f} GFLOPs at {summary['input_size']}")
    log.info(msg)
    return {**summary, "summary": str(out / "summary.json")}
