"""bench.search and bench.profile_search: the shared bi-level step, its variants, the grids and the profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import common, profile_search, search

TINY = ["model.search_layers=1", "model.scales=[4,8]", "model.base_width=4"]


def test_step_is_the_training_architect_first_and_second_order() -> None:
    for second in (False, True):
        net, cfg = search.build({"rsp": True, "overrides": TINY})
        x, y = search.batch_of(cfg, 1, [16, 32])
        before = [p.detach().clone() for p in (net.alpha, net.head.classifier.weight)]
        step = search.step_fn(net, cfg, x, y, second_order=second)
        arch_loss, weight_loss = step()
        assert arch_loss is not None and weight_loss is not None  # both halves of the bi-level step ran
        assert not torch.equal(before[0], net.alpha) and not torch.equal(before[1], net.head.classifier.weight)


def test_harness_times_the_shared_architect_step(monkeypatch) -> None:
    from rspnet.search import bilevel

    calls = []
    real = bilevel.Architect.step
    monkeypatch.setattr(bilevel.Architect, "step", lambda self, *a, **k: calls.append(self) or real(self, *a, **k))
    res = search.worker({"rsp": True, "overrides": TINY, "steps": 2, "warmup": 1, "batch": 1, "crop": [16, 32]})
    assert len(calls) == 3 and res["step_s"] > 0  # warm-up + timed steps: every one is the Architect training runs
    assert calls[0].grad_clip == 5.0 and not calls[0].second_order  # optimisers and clipping from conf/search


def test_cost_variants_share_one_table_wall_first(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    res = search.main(["--quick", "--variants", "RSP on", "RSP off", "RSP on, 2nd order", "--write", str(doc)])
    assert all(r["step_s"] > 0 and r["cpu_s"] > 0 and r["params_m"] > 0 for r in res.values())
    assert res[("tiny", "RSP on")]["params_m"] < res[("tiny", "RSP off")]["params_m"]  # cells at half width
    text = doc.read_text()
    assert text.count("## ") == 1 and "bench:search_cost:start" in text
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header.index("step wall") < header.index("step CPU")


def test_cost_table_keeps_rows_when_a_variant_fails() -> None:
    ok = {"step_s": 1.0, "cpu_s": 0.8, "memory_mib": 100.0, "params_m": 1.0, "batch": 2, "crop": [8, 8]}
    res = {
        ("tiny", "RSP on"): {**ok, "step_s": 0.5, "memory_mib": 40.0},
        ("tiny", "RSP off"): ok,
        ("tiny", "RSP off, 2nd order"): {"error": "CUDA out of memory"},
    }
    text = search.cost_table(res, "cuda")
    assert "| tiny (2 x 8x8) | RSP on | 1.000 | 0.500 | 0.800 | 40 | 0.50 | 0.40 |" in text
    assert "failed: CUDA out of memory" in text


def test_macro_worker_counts_alignments_and_the_cache_saves_memory() -> None:
    base = {
        "net": "macro",
        "rsp": True,
        "steps": 1,
        "warmup": 0,
        "batch": 1,
        "crop": [32, 64],
        "overrides": ["model.layers=3"],
    }
    cached, uncached = search.worker({**base, "reuse": True}), search.worker({**base, "reuse": False})
    # L = 3, S = 4: 4 * (1 + 2 * 4) cached alignments vs 4 * (1 + 5 + 9) per-node ones
    assert (cached["align_calls"], uncached["align_calls"]) == (36, 60)
    assert 0 < cached["saved_mib"] < uncached["saved_mib"]
    assert cached["step_s"] > 0 and cached["params_m"] == uncached["params_m"]


def test_scaling_grid_plots_and_tables(tmp_path: Path) -> None:
    doc, png = tmp_path / "b.md", tmp_path / "img" / "s.png"
    res = search.main(["--scaling", "--quick", "--plot", str(png), "--write", str(doc)])
    assert len(res) == 3 * 2 * 2  # factors x 2 values x RSP on/off
    assert png.stat().st_size > 1000 and "bench:search_scaling:start" in doc.read_text()


def test_profile_groups_ops_rsp_on_vs_off(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    on, off = profile_search.main(["--quick", "--write", str(doc)])
    for prof in (on, off):
        assert prof["kinds"]["conv forward"] > 0 and prof["kinds"]["conv backward"] > 0
        assert abs(sum(prof["kinds"].values()) - prof["total_ms"]) < 1e-6 * max(prof["total_ms"], 1.0)
    assert off["ops"]["aten::convolution_backward"][1] == on["ops"]["aten::convolution_backward"][1]  # same graph
    assert "bench:search_profile_tiny:start" in doc.read_text()


def test_kind_of_classifies_aten_ops() -> None:
    assert profile_search.kind_of("aten::convolution_backward") == "conv backward"
    assert profile_search.kind_of("aten::mkldnn_convolution") == "conv forward"
    assert profile_search.kind_of("aten::upsample_bilinear2d_backward") == "resize (bilinear)"
    assert profile_search.kind_of("aten::cat") == "copies, cat, slicing"


def test_stages_profiles_macro_and_cell_steps(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    macro, cell = profile_search.main(["--stages", "--quick", "--write", str(doc)])
    assert macro["calls"] != cell["calls"]  # different nets: PAM/alignments vs mixed ops on every edge
    assert macro["kinds"]["conv forward"] > 0 and cell["kinds"]["conv forward"] > 0
    assert "| kind | macro (ms/step) | cell (ms/step) | macro / cell |" in doc.read_text()


def test_epoch_profile_splits_the_stage(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    res = profile_search.main(["--epoch", "--quick", "--write", str(doc)])
    steps, calls = res["parts"]["bi-level training steps"]
    assert calls >= 1 and 0 < steps < res["wall_s"]
    assert "bench:demo_stage1_profile:start" in doc.read_text()


@pytest.mark.slow
def test_epoch_profile_counts_the_imports_in_a_fresh_process() -> None:
    """Under `make bench` the harness has imported rspnet already: the epoch must still pay its imports."""
    import rspnet.data  # noqa: F401  (as bench.run_all has, before this benchmark runs)

    quick = ["dataset.num_train=8", "dataset.num_val=4", "dataset.image_size=[32,64]", "dataset.crop_size=[32,64]"]
    res = common.run_worker("bench.profile_search", {"overrides": quick})
    seconds, _ = res["parts"]["import rspnet.data (Lightning, albumentations, cv2)"]
    assert seconds > 0.05
