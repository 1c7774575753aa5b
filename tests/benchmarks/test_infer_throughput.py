"""bench.infer_throughput: both paths, both sizes, both arms; the after arms make fewer network calls."""

from __future__ import annotations

import math
from pathlib import Path

from bench import infer_throughput


def test_quick_run_tables_before_and_after(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    rows = infer_throughput.main(["--quick", "--device", "cpu", "--sw-batch", "3", "--batch", "2", "--images", "4",
                                  "--write", str(doc)])
    assert {(r["size"], r["path"]) for r in rows} == {(s, p) for s in ("camvid", "cityscapes")
                                                       for p in ("eval slide", "predict whole")}
    assert all(r["images_per_s"] > 0 and r["cpu_s_per_image"] >= 0 for r in rows)
    for r in rows:
        size, crop = infer_throughput.QUICK[r["size"]]
        if r["path"] == "eval slide":
            n = infer_throughput.windows(size, crop)
            assert n > 3  # several windows, so batching them matters
            assert r["calls_per_image"] == (n if "sw_batch 1)" in r["arm"] else math.ceil(n / 3))
        else:
            assert r["calls_per_image"] == (1.0 if "batch 1)" in r["arm"] else 0.5)
    text = doc.read_text()
    assert "bench:infer_throughput:start" in text and "speed-up" in text
