"""stage=macro_search: stage 2 — search the trellis connections with the Path Attention Module.

Reads the stage-1 cell (`genotype=PATH`), runs the bi-level search of `MacroSearchModule`
(lit/macro_module.py) over `MacroSupernet` (beta and the CAM MLPs in the arch optimiser); the
module's export hook writes DIR/macro.json (top `macro.top_k` inputs per node), DIR/trellis.png
and DIR/beta.png.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from rspnet.data import build_datamodule
from rspnet.errors import ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.lit.macro_module import MacroSearchModule
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.stages.cell_search import fit_search
from rspnet.utils.config import require

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
    search = module.macro_arch().search
    log.info(
        "macro search: top-%d inputs for %d nodes -> %s (scoring=%s; mean path entropy / log K %.3f, beta %.3f)",
        module.top_k,
        len(net.nodes()),
        out / "macro.json",
        net.scoring,
        search["path_entropy"],
        search["beta_entropy"],
    )
    target = MacroArch.load(out / "macro.json").search.get("target")  # search.target_*: as held to the band
    if target and not target["within_band"]:
        log.warning(
            "macro search: no trellis found within +-10 %% of search.target_%s=%g for this cell (closest: %g); "
            "the cell search's target decides most of the cost",
            target["metric"],
            target["value"],
            target["derived"],
        )
    return dict(result or {}) | {
        "target": target,
        "macro": str(out / "macro.json"),
        "trellis": str(out / "trellis.png"),
        "path_entropy": search["path_entropy"],
    }
