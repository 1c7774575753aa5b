"""The model zoo: recomputed params/GMACs, published weights (checksum, classes, architecture, measured mIoU).

`zoo:camvid`'s mIoU is re-measured only where its data copy is (`../shared/data/camvid` from the
repo root); without it that test skips. A tiny zoo with its own weights and data makes every check
fail on purpose, so the checks are exercised on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import rspnet
from experiments import zoo
from rspnet.errors import ArtifactError
from tests.data.conftest import write_image, write_label

REPO = Path(__file__).resolve().parents[2]


def test_zoo_numbers_and_weights_match_the_recomputation() -> None:
    assert zoo.main(["--check", "--no-eval"]) == 0  # params, GMACs, weights' sha256, classes, palette, architecture
    entries = zoo.zoo_entries()
    assert {"paper_like-tiny", "paper_like-small", "paper_like-paper", "camvid"} <= set(entries)
    for entry in entries.values():  # a number without its provenance is not allowed
        assert entry["obtained"] and (entry["miou"] is None) == (entry["measured"] is None)


def test_check_fails_on_a_wrong_number(tmp_path: Path, monkeypatch) -> None:
    data = yaml.safe_load(zoo.zoo_file().read_text())
    data["models"] = data["models"][:1]
    data["models"][0]["params"] += 1
    bad = tmp_path / "zoo.yaml"
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(zoo, "zoo_file", lambda: bad)
    monkeypatch.setattr("rspnet.api.zoo_file", lambda: bad)
    assert zoo.main(["--check", "--no-eval"]) == 1


def test_zoo_camvid_is_the_trained_model() -> None:
    entry = zoo.zoo_entries()["camvid"]
    model = rspnet.load_model("zoo:camvid")
    assert model.kind == "zoo" and model.trained and model.source == "zoo:camvid"
    assert model.classes == entry["classes"] and model.palette == entry["palette"] and model.num_classes == 11
    assert model.params() == entry["params"] and model.meta["zoo"]["sha256"] == entry["sha256"]
    assert model.crop_size == (240, 320)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 11, 64, 96)


@pytest.mark.slow  # ~10 s: stage=eval of 101 images at 240x320
@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "camvid").is_dir(), reason="no ../shared/data/camvid")
def test_zoo_camvid_miou_is_reproduced_on_its_data() -> None:
    """stage=eval of the shipped weights on the stored copy and protocol gives the stored val mIoU (a few seconds)."""
    entry = zoo.zoo_entries()["camvid"]
    assert entry["scored_on"]["root"] == "../shared/data/camvid"
    notes: list[str] = []
    assert zoo.miou_differences("camvid", entry, notes) == []
    assert len(notes) == 1 and "re-measured on 101 val images" in notes[0], notes


# -- a tiny zoo of our own: every check fails when its statement is wrong ----------------------
def _camvid_tree(root: Path) -> Path:
    for split, name, rows in (("train", "a.png", [(8, 0), (8, 3)]), ("val", "c.png", [(10, 8), (6, 9)])):
        write_image(root / split / name)
        write_label(root / f"{split}annot" / name, rows)
    return root


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch) -> dict[str, Any]:
    """zoo.yaml with one published entry: an untrained 11-class micro net, scored on a one-image CamVid tree."""
    from rspnet.api import build_zoo_net
    from rspnet.composition import compose
    from rspnet.data.camvid import CLASSES, PALETTE
    from rspnet.genotype import Genotype
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.models.derived import default_macro
    from rspnet.resources import genotype_path
    from rspnet.utils.checkpoint import safetensors_bytes
    from rspnet.utils.io import file_sha256

    root = _camvid_tree(tmp_path / "camvid")
    folder = tmp_path / "zoo"
    folder.mkdir()
    entry: dict[str, Any] = {"name": "tiny", "genotype": "paper_like", "macro": "default_macro"}
    entry |= {"overrides": ["model=micro", "dataset=camvid"], "input_size": [16, 32], "weights": "tiny.safetensors"}
    cfg = compose(*entry["overrides"])
    torch.manual_seed(0)
    genotype = Genotype.load(genotype_path("paper_like"))
    module = build_seg_module(cfg, genotype, default_macro(cfg), 11, CLASSES, PALETTE)
    (folder / "tiny.safetensors").write_bytes(safetensors_bytes(module.net.state_dict(), module.meta))
    protocol = ["dataset=camvid", "split=val", "inference=whole", "trainer=cpu"]
    # the stored number comes from a plain stage=eval of the file, not from the check
    out = tmp_path / "eval"
    measured = rspnet.run(
        "eval", *protocol, f"dataset.root={root}", f"ckpt={folder / 'tiny.safetensors'}", f"paths.output_dir={out}"
    )
    entry |= {
        "sha256": file_sha256(folder / "tiny.safetensors"),
        "classes": list(CLASSES),
        "palette": [list(c) for c in PALETTE],
        "miou": round(measured["miou"], 4),
        "measured": {"device": "test"},
        "obtained": "test",
        "scored_on": {
            "root": str(root),
            "split": "val",
            "images": 1,
            "fingerprint": zoo.data_fingerprint(root, "val"),
            "overrides": protocol,
        },
    }
    entry |= zoo.measure(entry)
    assert build_zoo_net(entry)[0] is not None
    path = folder / "zoo.yaml"
    monkeypatch.setattr(zoo, "zoo_file", lambda: path)
    monkeypatch.setattr("rspnet.api.zoo_file", lambda: path)

    def write(**changes: Any) -> None:
        path.write_text(yaml.safe_dump({"models": [entry | changes]}))

    write()
    return {"entry": entry, "write": write, "root": root, "weights": folder / "tiny.safetensors"}


def _check(capsys) -> tuple[int, str]:
    code = zoo.main(["--check"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_check_passes_a_true_zoo_and_reloads_its_weights(tiny_zoo, capsys) -> None:
    code, text = _check(capsys)
    assert code == 0 and "tiny: miou" in text and "re-measured on 1 val images" in text, text
    model = rspnet.load_model("zoo:tiny")
    assert model.trained and model.classes == tiny_zoo["entry"]["classes"]


def test_check_fails_on_a_wrong_miou_checksum_palette_or_data(tiny_zoo, capsys) -> None:
    entry, write = tiny_zoo["entry"], tiny_zoo["write"]
    write(miou=round(entry["miou"] + 0.01, 4))
    code, text = _check(capsys)
    assert code == 1 and f"tiny: miou is {round(entry['miou'] + 0.01, 4)} on 1 images in zoo.yaml, measured" in text
    write(sha256="0" * 64)
    code, text = _check(capsys)
    assert code == 1 and "tiny: sha256 is 0000" in text
    with pytest.raises(ArtifactError, match="does not match the sha256 in zoo.yaml"):
        rspnet.load_model("zoo:tiny")
    write(palette=[[0, 0, 0]] * 11)
    code, text = _check(capsys)
    assert code == 1 and "tiny: palette in zoo.yaml differ" in text
    write(overrides=["model=micro", "dataset=cityscapes"])  # another architecture (19 classes)
    code, text = _check(capsys)
    assert code == 1 and "tiny: the weights do not fit the entry's genotype, macro and overrides" in text
    write()
    write_label(tiny_zoo["root"] / "valannot" / "c.png", [(16, 8)])  # another copy of the data
    code, text = _check(capsys)
    assert code == 1 and "is not the copy miou was measured on" in text


def test_check_skips_the_miou_without_the_data(tiny_zoo, capsys) -> None:
    """Absent data is a note, never a pass of the mIoU claim."""
    import shutil

    shutil.rmtree(tiny_zoo["root"])
    code, text = _check(capsys)
    assert code == 0 and "tiny: miou not re-measured: no data at" in text and "re-measured on" not in text
