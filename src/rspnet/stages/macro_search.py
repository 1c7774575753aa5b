"""stage=macro_search: stage 2 — search the trellis connections with the Path Attention Module.

Reads the stage-1 cell (`genotype=PATH`), runs the bi-level search of `MacroSearchModule`
(lit/macro_module.py) over `MacroSupernet` (beta and the CAM MLPs in the arch optimiser); the
module's export hook writes DIR/macro.json (top `macro.top_k` inputs per node), DIR/trellis.png
and DIR/beta.png. At success DIR/genotype.json is a byte copy of the cell it searched on, so DIR holds
the whole searched architecture (genotype.json + macro.json, as stage=sample_arch's folder): one
folder to train (`genotype=DIR/genotype.json macro_arch=DIR/macro.json`, the study's arms). `macro.select` chooses how the inputs are ranked (path scores or perturbation);
the evidence for the choice (macro.json `search.evidence`) is copied into DIR/search.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from rspnet.data import build_datamodule
from rspnet.data.selection import Selection
from rspnet.errors import ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.lit.fit import RESULT, fit_search
from rspnet.lit.macro_module import MacroSearchModule
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.utils.io import atomic_write_bytes, atomic_write_json
from rspnet.utils.runtime import require

log = logging.getLogger(__name__)


def _check_macro_cfg(cfg: DictConfig) -> None:
    """One-line ConfigErrors for bad macro.* values (before any data is loaded)."""
    m = cfg.macro
    if int(m.top_k) < 1:
        raise ConfigError(f"macro.top_k={m.top_k}: must be >= 1 (paper: 2)")
    if int(m.score_epochs) < 1:
        raise ConfigError(f"macro.score_epochs={m.score_epochs}: must be >= 1")
    if m.get("lookback") is not None and int(m.lookback) < 1:
        raise ConfigError(f"macro.lookback={m.lookback}: must be >= 1, or null for all earlier layers")
    if str(m.get("scoring", "pam")) not in ("pam", "beta"):
        raise ConfigError(f"macro.scoring={m.scoring}: use pam (CAM + beta, the paper) or beta (beta only, no CAM)")
    if int(m.mlp_hidden) < 1:
        raise ConfigError(f"macro.mlp_hidden={m.mlp_hidden}: must be >= 1")
    _check_select_cfg(cfg)


def _check_select_cfg(cfg: DictConfig) -> None:
    """One-line ConfigErrors for macro.select and the perturbation's options."""
    m = cfg.macro
    if str(m.get("select", "score")) not in ("score", "perturb"):
        raise ConfigError(f"macro.select={m.select}: use score (top path scores, the paper) or perturb (removal harm)")
    if str(m.get("select", "score")) != "perturb":
        return
    if str(m.perturb_metric) not in ("loss", "miou"):
        raise ConfigError(f"macro.perturb_metric={m.perturb_metric}: use loss or miou")
    if m.get("perturb_batches") is not None and int(m.perturb_batches) < 1:
        raise ConfigError(f"macro.perturb_batches={m.perturb_batches}: must be >= 1, or null for the whole split")
    split = str(m.perturb_split)
    if split not in ("arch", "select") or (split == "select" and not Selection.from_cfg(cfg).holds_out):
        raise ConfigError(
            f"macro.perturb_split={split}: use arch (the arch half of train) or select (the held-out slice "
            "of train; needs train.holdout_fraction > 0 and train.select holdout or last)"
        )


def run(cfg: DictConfig) -> dict:
    """Stage 2: search the trellis for the cell in `genotype=PATH`; returns the result dict."""
    genotype_path = require(cfg, "genotype", "pass genotype=DIR/genotype.json (written by stage=cell_search)")
    genotype = Genotype.load(genotype_path)
    _check_macro_cfg(cfg)
    if genotype.rsp != bool(cfg.rsp.enabled):
        log.warning(
            "%s was searched with rsp=%s but rsp.enabled=%s; the config wins",
            genotype_path,
            genotype.rsp,
            cfg.rsp.enabled,
        )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    net = MacroSupernet.from_cfg(cfg, genotype, datamodule.num_classes)
    module = MacroSearchModule(net, cfg)
    result = fit_search(cfg, module, datamodule)
    out = Path(str(cfg.paths.output_dir))
    # this rank's own final trellis (rank 0 may still be writing macro.json); under ddp_spawn this
    # process's module never saw the end of the fit, so the file (complete once the spawned ranks joined)
    final = module.final_arch if module.final_arch is not None else MacroArch.load(out / "macro.json")
    search = final.search
    target = search.get("target")  # search.target_*: as held to the band
    result = dict(result or {}) | {"select": search["select"], "evidence": search["evidence"], "target": target}
    atomic_write_json(out / RESULT, result)
    cell = _keep_cell(Path(genotype_path), out)
    log.info(
        "macro search: top-%d inputs for %d nodes -> %s (scoring=%s; mean path entropy / log K %.3f, beta %.3f)",
        module.top_k,
        len(net.nodes()),
        out / "macro.json",
        net.scoring,
        search["path_entropy"],
        search["beta_entropy"],
    )
    _warn_off_target(target)
    return result | {
        "macro": str(out / "macro.json"),
        "genotype": str(cell),
        "trellis": str(out / "trellis.png"),
        "path_entropy": search["path_entropy"],
    }


def _keep_cell(genotype: Path, out: Path) -> Path:
    """DIR/genotype.json: a byte copy of the searched-on cell (same content, so the same `genotype=` identity)."""
    dst = out / "genotype.json"
    if not (dst.exists() and dst.samefile(genotype)):
        atomic_write_bytes(dst, genotype.read_bytes())
    return dst


def _warn_off_target(target: dict | None) -> None:
    """One warning when the trellis could not be held to the resource target's band."""
    if target and not target["within_band"]:
        log.warning(
            "macro search: no trellis found within +-10 %% of search.target_%s=%g for this cell (closest: %g); "
            "the cell search's target decides most of the cost",
            target["metric"],
            target["value"],
            target["derived"],
        )
