"""Stage 1 (`stage=cell_search`): DARTS search of the Norm-Cell; the fit loop is lit/fit.py."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from rspnet.data import build_datamodule
from rspnet.genotype import Genotype
from rspnet.lit.fit import fit_search
from rspnet.lit.perturb import check_select_cfg
from rspnet.lit.search_module import SearchModule
from rspnet.models.supernet import CellSupernet
from rspnet.utils.runtime import output_dir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Stage 1: DARTS search of the Norm-Cell on the fixed trellis -> DIR/genotype.json, DIR/cell.png."""
    out = output_dir(cfg)
    check_select_cfg(cfg)  # search.select and its scoring split: one line now, not after the search
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    net = CellSupernet.from_cfg(cfg, datamodule.num_classes)
    module = SearchModule(net, cfg)
    result = fit_search(cfg, module, datamodule)
    genotype = out / "genotype.json"
    entropy = net.alpha_entropy()
    # the cell as written (its ops may be held to a resource target's band, models/cost.py): this rank's
    # own copy under DDP; under ddp_spawn this process's module never saw the end of the fit, so the file
    # (complete once the spawned ranks have joined)
    written = module.final_arch if module.final_arch is not None else Genotype.load(genotype)
    result.update(genotype=str(genotype), cell_picture=str(out / "cell.png"), alpha_entropy=entropy["mean"])
    result.update(target=written.search.get("target"), ops=written.ops)
    # normalised entropy 1.0 = softmax(alpha) still uniform: the argmax is noise, not a decision
    log.info(
        "cell search: genotype %s -> %s (alpha entropy / log 5: per edge %s, mean %.3f)",
        written.ops,
        genotype,
        entropy["per_edge"],
        entropy["mean"],
    )
    return result
