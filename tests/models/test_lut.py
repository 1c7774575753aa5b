"""The latency table: `stage=profile stage.mode=lut` writes it, a net's predicted latency is the sum of its blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet.errors import ConfigError
from rspnet.models.blocks import Layout, block_params
from rspnet.models.cost import BAND, CellCost, CellTarget, net_cost
from rspnet.models.derived import DerivedNet, default_macro
from rspnet.models.lut import LUT_FORMAT, LatencyTable, device_key, table_for
from rspnet.search_space.cell import RSP, FixedCell
from rspnet.search_space.ops import PRIMITIVES
from rspnet.search_space.trellis import Align
from rspnet.stages.profile import run as run_profile
from rspnet.stages.sample_arch import sample_architecture

MICRO = ("debug=tiny", "model=micro")


def _build_lut(make_cfg, path: Path, out: Path, *extra: str) -> dict:
    cfg = make_cfg(
        "stage=profile",
        "stage.mode=lut",
        *MICRO,
        "stage.warmup=1",
        "stage.repeats=2",
        "stage.rounds=1",
        f"search.latency_lut={path}",
        *extra,
        out=out,
    )
    return run_profile(cfg)


def test_lut_mode_writes_a_well_formed_table_and_merges_presets(make_cfg, tmp_path: Path) -> None:
    path = tmp_path / "lut" / "latency.json"
    result = _build_lut(make_cfg, path, tmp_path / "a")
    data = json.loads(path.read_text())
    assert data["format"] == LUT_FORMAT and list(data["devices"]) == [device_key()] == [result["device_key"]]
    table = data["devices"][device_key()]
    layout = Layout.from_cfg(make_cfg(*MICRO))
    expected = {b.key for b in layout.all_blocks(PRIMITIVES)}
    assert set(table["entries"]) == expected and result["blocks"] == len(expected)
    assert all(isinstance(v, float) and v > 0 for v in table["entries"].values())
    assert {"op:conv_5x5:c2:8x16", "align:c8>4:4x8>8x16", "stem:c3>4:32x64>8x16"} <= expected
    assert table["measured"]["input_size"] == [32, 64] and table["measured"]["model"] == "micro"
    assert json.loads((tmp_path / "a" / "lut.json").read_text())["devices"][device_key()]["entries"] == table["entries"]
    with pytest.raises(ConfigError, match="stage.mode=bogus is invalid; use model .* or lut"):
        _build_lut(make_cfg, path, tmp_path / "c", "stage.mode=bogus")
    _build_lut(make_cfg, path, tmp_path / "b", "stage.size=[16,32]")  # another size: merged, the first kept
    merged = json.loads(path.read_text())["devices"][device_key()]["entries"]
    assert set(table["entries"]) < set(merged)


def test_predicted_latency_is_the_sum_of_the_nets_parts(make_cfg) -> None:
    cfg = make_cfg("stage=sample_arch", "model=tiny", "model.layers=4")
    layout = Layout.from_cfg(cfg)
    keys = {b.key: b for b in layout.all_blocks(PRIMITIVES)}
    ones = LatencyTable(Path("ones.json"), "test", {k: 1.0 for k in keys})
    params = LatencyTable(Path("params.json"), "test", {k: float(block_params(b)) for k, b in keys.items()})
    for seed in range(3):
        genotype, macro, info = sample_architecture(cfg, seed)
        with torch.device("meta"):
            net = DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes))
        modules = list(net.modules())
        aligns, cells = (sum(isinstance(m, kind) for m in modules) for kind in (Align, RSP))
        parts = 2 + aligns + cells + sum(len(m.edges) for m in modules if isinstance(m, FixedCell))
        assert net_cost(layout, genotype.ops, macro, ones.price) == parts  # stem + head + aligns + cells + ops
        assert net_cost(layout, genotype.ops, macro, params.price) == info["params"]


def test_latency_target_without_a_table_is_one_error_naming_the_command(make_cfg, tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    cfg = make_cfg("stage=cell_search", *MICRO, "search.target_latency_ms=2", f"search.latency_lut={path}")
    with pytest.raises(
        ConfigError,
        match=r"needs a latency table: .*none.json does not exist; build it with `rspnet stage=profile stage.mode=lut`",
    ) as e:
        CellTarget.from_cfg(cfg)
    assert "\n" not in str(e.value)
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"format": LUT_FORMAT, "devices": {"another cpu | torch 0 | 1 threads": {"entries": {}}}})
    )
    with pytest.raises(ConfigError, match="no latency table for this device .* it has: another cpu"):
        table_for(make_cfg(*MICRO, f"search.latency_lut={other}"))


def test_latency_targets_read_the_table(make_cfg, tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    _build_lut(make_cfg, path, tmp_path / "p")
    lut = (f"search.latency_lut={path}",)
    # a table of another size has no entry for this derived net: one error naming the command
    with pytest.raises(
        ConfigError, match="has no entry stem:.*add this one with `rspnet stage=profile stage.mode=lut`"
    ):
        CellTarget.from_cfg(
            make_cfg("stage=cell_search", *MICRO, "dataset.crop_size=[16,16]", "search.target_latency_ms=1", *lut)
        )
    cfg = make_cfg("stage=cell_search", *MICRO, *lut)
    cost = CellCost.build(Layout.from_cfg(cfg), default_macro(cfg), table_for(cfg).price)
    low, high = cost.range()
    # the target: the cell whose measured cost is nearest the middle of the range, so that a cell within the band
    # exists whatever the timings (a loaded machine can leave the middle itself in a gap between cells)
    x = min(cost.all_costs(), key=lambda c: abs(c - (low + high) / 2))
    target = CellTarget.from_cfg(make_cfg("stage=cell_search", *MICRO, f"search.target_latency_ms={x}", *lut))
    ops, _ = target.select([[0.2] * 5] * 3)
    assert abs(target.cost.of_ops(ops) / x - 1) <= BAND
    cfg = make_cfg("stage=sample_arch", *MICRO, f"search.target_latency_ms={x}", *lut)
    _, _, info = sample_architecture(cfg, 0)
    assert info["target"]["metric"] == "latency_ms" and abs(info["target"]["cost"] / x - 1) <= BAND
