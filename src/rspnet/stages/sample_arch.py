"""stage=sample_arch: a random architecture from the search space (the random-search baseline).

Draws, with `seed=`, one op per cell edge uniformly from the 5 primitives and, for every node of
the macro trellis, its top-`macro.top_k` inputs uniformly (without replacement) among the same
candidates the macro supernet offers (`candidate_inputs`, respecting `macro.lookback`). Writes
DIR/genotype.json and DIR/macro.json with `"provenance": "random"` and DIR/sample.json.
`sample.param_match=REF` rejects draws whose derived network (built on the meta device for the
current model/rsp/head/dataset) is outside +-`sample.tolerance` of REF's parameter count; REF is
a number, a training checkpoint, or a folder holding genotype.json (+ macro.json).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.errors import ArtifactError, ConfigError
from rspnet.genotype import Edge, Genotype, MacroArch, MacroInput, MacroNode
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.models.macro_supernet import candidate_inputs
from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES
from rspnet.utils.checkpoint import read_checkpoint
from rspnet.utils.config import output_dir
from rspnet.utils.io import atomic_write_json
from rspnet.viz import save_figure
from rspnet.viz.cell import cell_figure
from rspnet.viz.trellis import draw_trellis

log = logging.getLogger(__name__)


def sample_genotype(rng: random.Random, rsp: bool, search: dict[str, Any]) -> Genotype:
    """One op per edge, uniform over PRIMITIVES (weights left empty: nothing was learned)."""
    edges = [Edge(src, dst, rng.choice(PRIMITIVES), ()) for src, dst in EDGES]
    return Genotype(edges=edges, rsp=rsp, search=dict(search), provenance="random")


def sample_macro(
    rng: random.Random, scales: list[int], layers: int, lookback: int | None, top_k: int, search: dict[str, Any]
) -> MacroArch:
    """Per node (layer 1..L, scale), `top_k` distinct inputs drawn uniformly from its candidates."""
    nodes = []
    for layer in range(1, layers + 1):
        cands = candidate_inputs(layer, scales, lookback)
        for scale in scales:
            picked = rng.sample(cands, min(top_k, len(cands)))
            nodes.append(MacroNode(layer, scale, tuple(MacroInput(l, s, 1.0) for l, s in picked)))
    return MacroArch(
        layers=layers, scales=list(scales), top_k=top_k, nodes=nodes, search=dict(search), provenance="random"
    )


def count_params(cfg: DictConfig, genotype: Genotype, macro: MacroArch) -> int:
    """Parameters of the derived network for cfg.model/rsp/head/dataset, built on the meta device (no memory)."""
    with torch.device("meta"):
        net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
    return sum(p.numel() for p in net.parameters())


def reference_params(cfg: DictConfig, ref: Any) -> int:
    """The parameter count to match: a number, a training checkpoint, or a folder with genotype.json (+ macro.json)."""
    if isinstance(ref, (int, float)) and not isinstance(ref, bool):
        if ref <= 0:
            raise ConfigError(f"sample.param_match={ref}: a parameter count must be > 0")
        return int(ref)
    path = Path(str(ref))
    if path.is_file() and path.suffix == ".ckpt":
        params = (read_checkpoint(path).get("rspnet") or {}).get("params")
        if not isinstance(params, int):
            raise ArtifactError(
                f"sample.param_match={path}: no parameter count in its rspnet metadata; pass a stage=train checkpoint"
            )
        return params
    if path.is_dir() and (path / "genotype.json").is_file():
        genotype = Genotype.load(path / "genotype.json")
        macro = MacroArch.load(path / "macro.json") if (path / "macro.json").is_file() else default_macro(cfg)
        return count_params(cfg, genotype, macro)
    raise ConfigError(
        f"sample.param_match={ref}: pass a parameter count, a stage=train checkpoint (.ckpt) "
        "or a folder holding genotype.json (and macro.json)"
    )


def sample_architecture(cfg: DictConfig, seed: int) -> tuple[Genotype, MacroArch, dict[str, Any]]:
    """Draw (genotype, macro) with `seed`; with sample.param_match, redraw until within tolerance."""
    s = cfg.sample
    tolerance, max_tries = float(s.tolerance), int(s.max_tries)
    if not 0 < tolerance < 1 or max_tries < 1:
        raise ConfigError(f"sample.tolerance={s.tolerance} must be in (0, 1) and sample.max_tries={s.max_tries} >= 1")
    target = reference_params(cfg, s.param_match) if s.get("param_match") is not None else None
    m = cfg.model
    lookback = cfg.macro.get("lookback")
    info: dict[str, Any] = {"method": "uniform", "seed": seed, "param_match": None}
    rng = random.Random(seed)
    for tries in range(1, max_tries + 1):
        genotype = sample_genotype(rng, bool(cfg.rsp.enabled), info)
        macro = sample_macro(rng, [int(x) for x in m.scales], int(m.layers), lookback, int(cfg.macro.top_k), info)
        params = count_params(cfg, genotype, macro)
        if target is None or abs(params - target) <= tolerance * target:
            match = (
                None
                if target is None
                else {
                    "reference": str(s.param_match),
                    "reference_params": target,
                    "tolerance": tolerance,
                    "tries": tries,
                }
            )
            info = info | {"param_match": match, "params": params}
            genotype.search, macro.search = dict(info), dict(info) | {"lookback": lookback}
            return genotype, macro, info
    raise ConfigError(
        f"sample.param_match: no draw within +-{tolerance:.0%} of {target} params in {max_tries} tries "
        f"(seed={seed}); raise sample.tolerance or sample.max_tries"
    )


def run(cfg: DictConfig) -> dict:
    """Write DIR/genotype.json, DIR/macro.json, DIR/sample.json (+ cell.png, trellis.png)."""
    out = output_dir(cfg)
    seed = int(cfg.get("seed", 0))
    genotype, macro, info = sample_architecture(cfg, seed)
    genotype.save(out / "genotype.json")
    macro.save(out / "macro.json")
    atomic_write_json(out / "sample.json", info | {"provenance": "random", "ops": genotype.ops})
    if cfg.sample.get("pictures", True):
        save_figure(cell_figure(genotype, title=f"random Norm-Cell (seed {seed})"), out / "cell.png")
        draw_trellis(macro, out / "trellis.png", title=f"random trellis (seed {seed})")
    log.info("sample_arch: seed %d: cell %s, %.3fM params -> %s", seed, genotype.ops, info["params"] / 1e6, out)
    return {
        "genotype": str(out / "genotype.json"),
        "macro": str(out / "macro.json"),
        "params": info["params"],
        "seed": seed,
        "tries": (info["param_match"] or {}).get("tries", 1),
    }
