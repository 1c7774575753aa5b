"""experiments.camvid_full on hand-made run folders: phase A's pick, phase B's table, comparison and goals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.camvid_full import choose, main, phase_a_rows


def _write(path: Path, data: dict | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _phase_a(root: Path) -> Path:
    """Two training runs (scale ranges) x two eval scales, scored on the selection split; one val eval."""
    scores = {("job0", 0.75): 0.500, ("job0", 1.0): 0.505, ("job1", 0.75): 0.480, ("job1", 1.0): 0.530}
    for job, scale_range in (("job0", "[0.5, 1.0]"), ("job1", "[0.75, 1.5]")):
        _write(root / job / "config.yaml", f"seed: 0\ndataset:\n  scale_range: {scale_range}\n")
        _write(root / job / "done.json", {"wall_s": 600.0, "cpu_s": 1000.0})
    for (job, scale), miou in scores.items():
        ev = root / job / f"select_{scale}"
        _write(ev / "config.yaml", f"dataset:\n  eval_scale: {scale}\n")
        _write(
            ev / "metrics.json",
            {"miou": miou, "split": "select", "checkpoint": str(root / job / "checkpoints" / "best.ckpt")},
        )
    _write(root / "job1" / "val" / "metrics.json", {"miou": 0.99, "split": "val", "checkpoint": "x"})  # never read
    return root


def test_phase_a_reads_the_selection_evals_and_picks_by_the_protocol(tmp_path: Path) -> None:
    rows = phase_a_rows(_phase_a(tmp_path / "a"))
    assert len(rows) == 4 and {r["scale_range"][0] for r in rows} == {0.5, 0.75}  # the val eval is not a row
    pick = choose(rows)
    assert pick["run"] == "job1" and pick["eval_scale"] == 1.0  # 0.530: no other pair within 1 point
    # within 1 point of the best, the cheaper inference wins
    assert (
        choose([dict(r, miou=0.53 if r["eval_scale"] == 1.0 and r["run"] == "job1" else 0.525) for r in rows])[
            "eval_scale"
        ]
        == 0.75
    )


def _phase_b(root: Path) -> Path:
    vals = {"rspnet": [0.62, 0.64, 0.63], "enet": [0.55, 0.57, 0.56]}
    for net, values in vals.items():
        for seed, val in enumerate(values):
            job = root / f"{net}_s{seed}"
            _write(job / "config.yaml", f"seed: {seed}\n")
            _write(job / "pipeline.json", {"net": net, "miou": val, "selection_miou": val + 0.01, "params": 360000})
            per_class = {"road": 0.9, "pole": 0.25 if net == "rspnet" else 0.1}
            _write(job / "eval" / "metrics.json", {"miou": val, "split": "val", "iou_per_class": per_class})
            for stage in ("train", "eval"):
                _write(job / stage / "done.json", {"wall_s": 60.0, "cpu_s": 90.0})
    return root


def test_phase_b_page_has_both_nets_the_comparison_and_the_goals(tmp_path: Path) -> None:
    out = tmp_path / "camvid_full.md"
    assert (
        main(
            ["--phase-a", str(_phase_a(tmp_path / "a")), "--phase-b", str(_phase_b(tmp_path / "b")), "--out", str(out)]
        )
        == 0
    )
    text = out.read_text()
    assert "**scale_range [0.75, 1.5], eval_scale 1.0** (53.00 %)" in text
    assert "| job1 | [0.75, 1.5] | 0.75 | 48.00 | best.ckpt | 10.0 |" in text
    assert "| rspnet | 0, 1, 2 | 63.00 ± 1.00 | 64.00 ± 1.00 | 0.360 | 2.0 | 3.0 |" in text
    assert "| enet | 0, 1, 2 | 56.00 ± 1.00 |" in text
    assert "| pole | 25.0 | 10.0 |" in text
    assert "* val: rspnet - enet = +7.00 points [95 % CI" in text and "pooled seed SD 1.00 points" in text
    assert (
        "| val mIoU ≥ 0.60 | yes | 0.630 |" in text
        and "| no class below 0.20 (seed means) | yes | lowest 0.250 |" in text
    )


def test_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--phase-b", str(tmp_path / "nope")]) == 2
    assert "--phase-b" in capsys.readouterr().err
