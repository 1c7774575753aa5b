"""Macro selection end to end: known path scores -> each node's top-2 inputs in macro.json ->
a derived network wired exactly as macro.json says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rspnet.genotype import STEM, Genotype, MacroArch
from rspnet.lit.macro_module import MacroSearchModule
from rspnet.models.derived import DerivedNet, live_nodes
from rspnet.models.macro_supernet import MacroSupernet
from tests.conftest import OPS

pytestmark = pytest.mark.reliability

MODEL = ("model.layers=3", "model.scales=[4,8,16]", "model.base_width=4", "model.cells_per_node=1", "macro.top_k=2")


def _searched(make_cfg, tmp_path: Path) -> tuple[MacroSearchModule, dict, Path]:
    """A macro module whose path scores are known (distinct, seeded); its macro.json written to disk."""
    cfg = make_cfg("stage=macro_search", *MODEL, out=tmp_path / "macro")
    module = MacroSearchModule(MacroSupernet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), 4), cfg)
    size = sum(len(c) for c in module.net.candidates.values())
    scores = torch.randperm(size, generator=torch.Generator().manual_seed(15)).double() + 1.0
    module.scores.total = torch.cat([scores * 10, torch.tensor([10.0], dtype=torch.float64)])  # sums, count
    known = {node: scores[module.slices[node]].tolist() for node in module.net.candidates}
    path = module.macro_arch().save(tmp_path / "macro.json")
    return module, known, path


def test_each_node_keeps_its_two_best_candidates(make_cfg, tmp_path: Path) -> None:
    module, known, path = _searched(make_cfg, tmp_path)
    macro = MacroArch.load(path)
    assert macro.layers == 3 and len(macro.nodes) == 9
    for node, cands in module.net.candidates.items():
        ranked = sorted(zip(known[node], cands), reverse=True)  # independent of the module's ranking
        picked = macro.node(*node).inputs
        assert [(i.layer, i.scale) for i in picked] == [c for _, c in ranked[:2]], node
        assert [i.score for i in picked] == [round(s, 6) for s, _ in ranked[:2]], node


def _descendants(macro: MacroArch, source: tuple[int, int]) -> set[tuple[int, int]]:
    """Nodes that read `source`, directly or through other nodes, according to macro.json."""
    fed: set[tuple[int, int]] = set()
    for node in sorted((n.layer, n.scale) for n in macro.nodes):
        if any((i.layer, i.scale) == source or (i.layer, i.scale) in fed for i in macro.node(*node).inputs):
            fed.add(node)
    return fed


def test_derived_network_is_wired_as_macro_json_says(make_cfg, tmp_path: Path) -> None:
    """Perturb one node's output: exactly the nodes macro.json feeds from it (transitively) change."""
    _, _, path = _searched(make_cfg, tmp_path)
    macro = MacroArch.load(path)
    cfg = make_cfg("stage=train", *MODEL)
    torch.manual_seed(0)
    net = DerivedNet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), macro, num_classes=4).eval()
    live = live_nodes(macro)
    modules = {STEM: net.stem} | {n: net.trellis[f"l{n[0]}_s{n[1]}"] for n in live}
    outputs: dict[tuple[int, int], torch.Tensor] = {}
    for node, module in modules.items():
        module.register_forward_hook(lambda m, args, out, node=node: outputs.__setitem__(node, out.detach().clone()))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        net(x)
    base = dict(outputs)
    assert any(0 < len(_descendants(macro, n) & set(live)) < len(live) for n in live)  # a wiring to tell apart
    for source, module in modules.items():
        handle = module.register_forward_hook(lambda m, args, out: out + 1.0)
        with torch.no_grad():
            net(x)
        handle.remove()
        changed = {n for n in live if not torch.equal(outputs[n], base[n])}
        assert changed == _descendants(macro, source) & set(live), source
