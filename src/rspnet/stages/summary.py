"""`stage=summary`: parameter count (by part) and GFLOPs of any preset, without training.

With net=enet (or another `net` entry built from its keys alone): its parameters and GFLOPs (no parts).

The network is built on the `meta` device (no memory, no init cost), so even the paper preset
at 1024x2048 is summarised in seconds on a laptop. The counting lives in models/cost.py.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from rspnet.architecture import cfg_provenance, load_architecture
from rspnet.models.cost import summarize, summarize_family
from rspnet.models.nets import is_searched, net_spec
from rspnet.utils.io import atomic_write_json
from rspnet.utils.runtime import output_dir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Write DIR/summary.json: {"params", "params_by_part", "gflops", "input_size", ...}."""
    out = output_dir(cfg)
    spec = net_spec(cfg)
    if is_searched(spec):
        summary = summarize(cfg, *load_architecture(cfg)) | {"arch_provenance": cfg_provenance(cfg)}
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
