"""bench.derived and bench.throughput: the derived-net, training-option, data and inference benchmarks (quick)."""

from __future__ import annotations

import math
from pathlib import Path

from bench import derived, throughput


def test_derived_rows_count_on_meta_and_time_the_tiny_net(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    rows = {r["label"]: r for r in derived.main(["--quick", "--write", str(doc)])}
    assert set(rows) == {label for label, *_ in derived.ROWS}
    assert rows["RSPNet paper, RSP on"]["params_m"] < 0.3 * rows["HRNetV2-W48 + FCN head"]["params_m"]
    assert rows["RSPNet tiny, RSP on"]["cpu_latency_s"] > 0 and rows["RSPNet paper, RSP on"]["cpu_latency_s"] is None
    assert "bench:derived_cost:start" in doc.read_text()


def test_train_options_time_the_eager_rows(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    res = derived.main(["--train-options", "--quick", "--device", "cpu", "--write", str(doc)])
    assert set(res) == {"baseline (NCHW, eager)", "train.channels_last=true"}  # compile rows: minutes, not in --quick
    assert all(r["step_s"] > 0 for r in res.values())
    assert "bench:train_options_cpu:start" in doc.read_text()


def test_data_throughput_loader_vs_step_and_camvid_needs_a_root(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    rows = throughput.main(["--data", "--quick", "--write", str(doc)])
    assert rows[0]["dataset"] == "synthetic" and rows[0]["loader_ips"] > 0 and rows[0]["step_ips"] > 0
    assert "bench:data_throughput:start" in doc.read_text()


def test_infer_throughput_after_arms_make_fewer_calls(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    rows = throughput.main(
        [
            "--infer",
            "--quick",
            "--device",
            "cpu",
            "--sw-batch",
            "3",
            "--batch",
            "2",
            "--images",
            "4",
            "--write",
            str(doc),
        ]
    )
    assert {(r["size"], r["path"]) for r in rows} == {
        (s, p) for s in ("camvid", "cityscapes") for p in ("eval slide", "predict whole")
    }
    assert all(r["images_per_s"] > 0 and r["cpu_s_per_image"] >= 0 for r in rows)
    for r in rows:
        size, crop = throughput.QUICK[r["size"]]
        if r["path"] == "eval slide":
            n = throughput.windows(size, crop)
            assert n > 3  # several windows, so batching them matters
            assert r["calls_per_image"] == (n if "sw_batch 1)" in r["arm"] else math.ceil(n / 3))
        else:
            assert r["calls_per_image"] == (1.0 if "batch 1)" in r["arm"] else 0.5)
    assert "speed-up" in doc.read_text()
