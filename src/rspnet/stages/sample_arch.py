"""stage=sample_arch: a random architecture from the search space (the random-search baseline).

Draws, with `seed=`, one op per cell edge uniformly from the 5 primitives and, for every node of
the macro trellis, its top-`macro.top_k` inputs uniformly (without replacement) among the same
candidates the macro supernet offers (`candidate_inputs`, respecting `macro.lookback`). Writes
DIR/genotype.json and DIR/macro.json with `"provenance": "random"` and DIR/sample.json.
`sample.param_match=REF` rejects draws whose derived network (built on the meta device for the
current model/rsp/head/dataset) is outside +-`sample.tolerance` of REF's parameter count; REF is
a number, a training checkpoint, or a folder holding genotype.json (+ macro.json).
`search.target_params=X` / `search.target_gmacs=X` / `search.target_latency_ms=X` (the resource target of the search, see
models/cost.py) instead rejects draws whose derived net is outside +-10 % of X (latency predicted
by the latency table), so random baselines are drawn at the target the search was held to.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rspnet.architecture import load_macro
from rspnet.errors import ArtifactError, ConfigError
from rspnet.genotype import Edge, Genotype, MacroArch, MacroInput, MacroNode
from rspnet.models.blocks import Layout
from rspnet.models.cost import BAND, count_params, net_cost, target_from_cfg
from rspnet.models.macro_supernet import candidate_inputs
from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES
from rspnet.utils.checkpoint import read_checkpoint
from rspnet.utils.io import atomic_write_json
from rspnet.utils.runtime import output_dir
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
        macro = load_macro(cfg, path / "macro.json" if (path / "macro.json").is_file() else None)
        return count_params(cfg, genotype, macro)
    raise ConfigError(
        f"sample.param_match={ref}: pass a parameter count, a stage=train checkpoint (.ckpt) "
        "or a folder holding genotype.json (and macro.json)"
    )


@dataclass
class _Match:
    """What a draw must match: `value` +-`tolerance` of `cost(genotype, macro)`; `key` names it in sample.json."""

    option: str
    value: float
    tolerance: float
    cost: Callable[[Genotype, MacroArch], float]
    key: str  # "param_match" | "target"
    record: dict[str, Any]

    def fits(self, cost: float) -> bool:
        return abs(cost - self.value) <= self.tolerance * self.value * (1 + 1e-12)


def _match(cfg: DictConfig) -> _Match | None:
    """The search.target_* or sample.param_match draws must meet; None = accept every draw."""
    s = cfg.sample
    target = target_from_cfg(cfg)
    if target is not None and s.get("param_match") is not None:
        raise ConfigError(
            f"sample.param_match={s.param_match} and {target.option}={target.value:g} are both set; "
            "draw at one of them (set the other to null)"
        )
    if target is not None:
        layout = Layout.from_cfg(cfg)
        return _Match(
            target.option,
            target.value,
            BAND,
            lambda g, m: net_cost(layout, g.ops, m, target.price),
            "target",
            {"metric": target.metric, "value": target.value, "band": BAND},
        )
    if s.get("param_match") is None:
        return None
    ref, tolerance = reference_params(cfg, s.param_match), float(s.tolerance)
    record = {"reference": str(s.param_match), "reference_params": ref, "tolerance": tolerance}
    return _Match("sample.param_match", ref, tolerance, lambda g, m: count_params(cfg, g, m), "param_match", record)


def sample_architecture(cfg: DictConfig, seed: int) -> tuple[Genotype, MacroArch, dict[str, Any]]:
    """Draw (genotype, macro) with `seed`; with a search.target_* or sample.param_match, redraw until within it."""
    s, m = cfg.sample, cfg.model
    tolerance, max_tries = float(s.tolerance), int(s.max_tries)
    if not 0 < tolerance < 1 or max_tries < 1:
        raise ConfigError(f"sample.tolerance={s.tolerance} must be in (0, 1) and sample.max_tries={s.max_tries} >= 1")
    match, lookback = _match(cfg), cfg.macro.get("lookback")
    info: dict[str, Any] = {"method": "uniform", "seed": seed, "param_match": None}
    rng, costs = random.Random(seed), []
    for tries in range(1, max_tries + 1):
        genotype = sample_genotype(rng, bool(cfg.rsp.enabled), info)
        macro = sample_macro(rng, [int(x) for x in m.scales], int(m.layers), lookback, int(cfg.macro.top_k), info)
        if match is not None:
            costs.append(match.cost(genotype, macro))
            if not match.fits(costs[-1]):
                continue
            info[match.key] = match.record | {"tries": tries} | ({"cost": costs[-1]} if match.key == "target" else {})
        info["params"] = count_params(cfg, genotype, macro)
        genotype.search, macro.search = dict(info), dict(info) | {"lookback": lookback}
        return genotype, macro, info
    extra = " or sample.tolerance" if match.key == "param_match" else ""
    raise ConfigError(
        f"{match.option}: no draw within +-{match.tolerance:.0%} of {match.value:g} in {max_tries} tries "
        f"(seed={seed}); the draws of model={m.name} spanned {min(costs):.6g} to {max(costs):.6g}: "
        f"choose a value in that range, or raise sample.max_tries{extra}"
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
        "tries": (info.get("target") or info["param_match"] or {}).get("tries", 1),
        "target": info.get("target"),
    }
