"""experiments/zoo.yaml: the recomputed params/GMACs agree with the file; a wrong number fails the check."""

from __future__ import annotations

from pathlib import Path

import yaml

from experiments import zoo


def test_zoo_numbers_match_the_recomputation() -> None:
    assert zoo.main(["--check"]) == 0
    entries = zoo.zoo_entries()
    assert {"paper_like-tiny", "paper_like-small", "paper_like-paper"} <= set(entries)
    for entry in entries.values():  # a number without its provenance is not allowed
        assert entry["obtained"] and (entry["miou"] is None) == (entry["measured"] is None)


def test_check_fails_on_a_wrong_number(tmp_path: Path, monkeypatch) -> None:
    data = yaml.safe_load(zoo.zoo_file().read_text())
    data["models"] = data["models"][:1]
    data["models"][0]["params"] += 1
    bad = tmp_path / "experiments" / "zoo.yaml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(data))
    (tmp_path / "experiments" / "genotypes").symlink_to(zoo.zoo_file().parent / "genotypes")
    monkeypatch.setattr(zoo, "zoo_file", lambda: bad)
    monkeypatch.setattr("rspnet.api.zoo_file", lambda: bad)
    assert zoo.main(["--check"]) == 1
