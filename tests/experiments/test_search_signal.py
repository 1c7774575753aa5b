"""experiments/search_signal.py: real vs null search statistics from artifacts."""

import json
import random
from pathlib import Path

import pytest

from experiments import search_signal
from rspnet.genotype import Genotype


def _write(folder: Path, seed: int, null: bool, sharp: float, rng: random.Random) -> None:
    weights = []
    for _ in range(3):
        raw = [rng.random() for _ in range(5)]
        raw[0] += sharp  # real searches favour op 0 on every edge
        total = sum(raw)
        weights.append([v / total for v in raw])
    g = Genotype.from_weights(weights, rsp=True, search={"seed": seed, "null": null})
    folder.mkdir(parents=True)
    g.save(folder / "genotype.json")


def test_decisive_real_searches_lie_outside_the_null_range_and_agree(tmp_path: Path, capsys) -> None:
    rng = random.Random(0)
    for s in range(6):
        _write(tmp_path / f"real{s}", s, False, 8.0, rng)
    for s in range(20):
        _write(tmp_path / f"null{s}", s, True, 0.0, rng)
    assert search_signal.main([str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    rows = {r["statistic"]: r for r in search_signal.compare(*_split(search_signal.collect([tmp_path])["cell"]))}
    assert rows["alpha/top1"]["outside"] == "6/6" and rows["alpha/entropy"]["outside"] == "6/6"
    assert rows["alpha/top1"]["p"] < 0.01
    text = (tmp_path / "t.md").read_text()
    assert (
        "6 real vs 20 null searches (search.null=labels)" in text
        and "Pairwise agreement of the choices: real 1.000" in text
    )


def test_null_like_real_searches_are_not_called_decisive(tmp_path: Path) -> None:
    rng = random.Random(1)
    for s in range(8):
        _write(tmp_path / f"real{s}", s, False, 0.0, rng)
    for s in range(20):
        _write(tmp_path / f"null{s}", s, True, 0.0, rng)
    rows = {r["statistic"]: r for r in search_signal.compare(*_split(search_signal.collect([tmp_path])["cell"]))}
    assert int(rows["alpha/top1"]["outside"].split("/")[0]) <= 2
    assert rows["alpha/top1"]["p"] > 0.01


def test_incomplete_searches_are_left_out_and_bad_folders_are_one_line(tmp_path: Path) -> None:
    rng = random.Random(2)
    _write(tmp_path / "real0", 0, False, 1.0, rng)
    doc = json.loads((tmp_path / "real0" / "genotype.json").read_text())
    (tmp_path / "real0" / "genotype.json").write_text(json.dumps(doc | {"complete": False}))
    with pytest.raises(SystemExit, match="no complete genotype.json"):
        search_signal.main([str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a folder"):
        search_signal.main([str(tmp_path / "missing")])


def _split(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    return [r for r in runs if not r["null"]], [r for r in runs if r["null"]]


def _write_grad(folder: Path, seed: int, null: bool, sharp: float, rng: random.Random, cpu_s: float) -> None:
    _write(folder, seed, False, sharp, rng)
    doc = json.loads((folder / "genotype.json").read_text())
    doc["search"]["null"] = "grad" if null else False
    (folder / "genotype.json").write_text(json.dumps(doc))
    (folder / "done.json").write_text(json.dumps({"cpu_s": cpu_s}))


def test_knob_table_ranks_the_recipe_with_signal_above_the_one_without(tmp_path: Path, capsys) -> None:
    rng = random.Random(3)
    for name, sharp in (("flat", 0.0), ("sharp", 6.0)):
        for s in range(5):
            _write_grad(tmp_path / name / f"real{s}", s, False, sharp, rng, 120.0)
            _write_grad(tmp_path / name / f"null{s}", s, True, 0.0, rng, 60.0)
    _write_grad(tmp_path / "few" / "real0", 0, False, 6.0, rng, 60.0)
    knobs = [f"flat={tmp_path / 'flat'}", f"sharp={tmp_path / 'sharp'}", f"few={tmp_path / 'few'}"]
    assert search_signal.main([arg for k in knobs for arg in ("--knob", k)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()}
    gap_flat, gap_sharp = float(rows["flat"][4]), float(rows["sharp"][4])
    assert gap_sharp > 2.0 > abs(gap_flat)  # entropy below the null's by > 2 null SDs only with signal
    assert float(rows["sharp"][5]) < 0.01 < float(rows["flat"][5])  # Mann-Whitney p
    assert rows["sharp"][9].strip(" |") == "1.500"  # CPU minutes per search from done.json (mean of 120 s, 60 s)
    assert "needs >= 2 real" in rows["few"][3] and len(rows["few"]) == len(rows["flat"])
    with pytest.raises(SystemExit, match="NAME=DIR"):
        search_signal.main(["--knob", "nodir"])


def test_the_cell_a_macro_search_read_is_not_a_cell_search(tmp_path: Path, monkeypatch) -> None:
    """A macro search's folder holds a copy of its cell (genotype.json beside macro.json): not counted as a cell."""
    monkeypatch.setattr(search_signal, "read_cell", lambda path: path)
    monkeypatch.setattr(search_signal, "read_macro", lambda path: path)
    for rel in ("cell/s0/genotype.json", "macro/s0/genotype.json", "macro/s0/macro.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    runs = search_signal.collect([tmp_path])
    assert runs == {"cell": [tmp_path / "cell/s0/genotype.json"], "macro": [tmp_path / "macro/s0/macro.json"]}


def test_constant_and_twin_statistics_are_not_rows() -> None:
    """A count every search shares (images scored) and a statistic recorded twice are left out of the table."""

    def run(entropy: float, null: str | None) -> dict:
        return {"null": null, "stats": {"alpha/entropy": entropy, "evidence/entropy": entropy, "scoring/images": 165.0}}

    real = [run(0.90 + i / 100, None) for i in range(4)]
    null = [run(0.95 + i / 100, "grad") for i in range(4)]
    assert [r["statistic"] for r in search_signal.compare(real, null)] == ["alpha/entropy"]
