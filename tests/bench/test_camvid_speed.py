"""bench/camvid_speed.py: ours vs ENet latency rows, alternating arms, params and GMACs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import camvid_speed


def test_rows_for_ours_and_enet_with_their_params_and_gmacs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.md"
    assert camvid_speed.main(["--rounds", "2", "--repeats", "1", "--size", "32", "48", "--write", str(out)]) == 0
    text = out.read_text()
    assert "<!-- bench:camvid_speed:start -->" in text and "Command: `python -m bench.camvid_speed" in text
    rows = [
        line.split(" | ")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    by_net = {r[0].strip("| "): r for r in rows[1:]}
    assert by_net["ENet (net=enet)"][1] == "364,127"  # the paper's network (tests/models/test_enet.py derives it)
    assert by_net["rspnet (experiment=camvid)"][1] == "422,547"  # the shipped camvid_tiny_s0 architecture
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and r[6].strip(" |") == "2" for r in by_net.values())


def test_bad_arch_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--arch nofiles"):
        camvid_speed.main(["--arch", "nofiles", "--rounds", "1", "--repeats", "1"])


def test_eval_scale_times_the_scaled_forward_and_the_upsampling(tmp_path: Path, capsys) -> None:
    """At eval_scale 0.5 the forward runs at half the frame's sides (a quarter of the MACs) and the row is per frame."""
    full = camvid_speed.measure(["enet=net:enet"], (64, 96), rounds=1, repeats=1)
    half = camvid_speed.measure(["enet=net:enet"], (64, 96), rounds=1, repeats=1, eval_scale=0.5)
    assert half[0]["gmacs"] == pytest.approx(full[0]["gmacs"] / 4, rel=0.05)
    assert half[0]["params"] == full[0]["params"] and half[0]["calls"] == 1
    out = tmp_path / "bench.md"
    argv = ["--rounds", "1", "--repeats", "1", "--size", "64", "96", "--eval-scale", "0.5", "--write", str(out)]
    assert camvid_speed.main(argv) == 0
    assert "frame 64x96 (H x W) at eval_scale 0.5: the forward at 32x48 and the logits upsampled" in out.read_text()
    with pytest.raises(SystemExit):
        camvid_speed.main(["--eval-scale", "0", "--rounds", "1", "--repeats", "1"])


RECORDS = Path(__file__).resolve().parents[2] / "experiments" / "records" / "camvid_full" / "phase_c"


@pytest.mark.skipif(not RECORDS.is_dir(), reason="the phase C records are not in this checkout")
def test_pipelines_adds_each_searched_net_of_a_records_folder(tmp_path: Path, capsys) -> None:
    """Each pipeline folder's genotype + macro becomes a row, built as it was trained (its params are the
    pipeline's own, from pipeline.json); a folder with no searched pipeline is one line."""
    import json

    archs = camvid_speed.pipeline_archs(RECORDS)
    folders = sorted(p.parent for p in RECORDS.rglob("pipeline.json"))
    assert [a.split("=", 1)[0] for a in archs] == [f"{f.name} (phase_c)" for f in folders]
    first = folders[0]
    assert (
        camvid_speed.main(["--pipelines", str(RECORDS), "--rounds", "1", "--repeats", "1", "--size", "32", "48"]) == 0
    )
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()}
    params = json.loads((first / "pipeline.json").read_text())["params"]
    assert rows[f"{first.name} (phase_c)"][1] == f"{params:,}"
    (tmp_path / "enet_s0" / "train").mkdir(parents=True)  # a baseline's pipeline: nothing searched
    with pytest.raises(SystemExit, match=f"--pipelines {tmp_path}: no pipeline folder"):
        camvid_speed.main(["--pipelines", str(tmp_path), "--rounds", "1", "--repeats", "1"])
    with pytest.raises(SystemExit, match="--pipelines nowhere: not a folder"):
        camvid_speed.main(["--pipelines", "nowhere", "--rounds", "1", "--repeats", "1"])
