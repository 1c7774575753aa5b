"""Fuzzed parsers (hypothesis): mutated genotype.json, macro.json, checkpoint metadata and dataset
label files end in one clean RSPNetError (one line, naming the file) or a valid result — never
another exception, never a written file. Bounded and derandomized: the same cases on every run."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rspnet.errors import RSPNetError
from rspnet.genotype import Genotype, MacroArch
from tests.conftest import OPS, macro_doc

pytestmark = pytest.mark.reliability

# cases per parser (docs/reliability.md reports them): many for the JSON parsers (milliseconds each),
# fewer where a case builds a network or decodes images
EXAMPLES = {"genotype": 200, "macro": 200, "checkpoint": 100, "labels": 10, "mapillary_config": 100}  # labels: per kind


def fuzz(parser: str) -> Any:
    return settings(
        max_examples=EXAMPLES[parser],
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


NUMBERS = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**400, 2**63, -1, 0, 1, 7, 0.5, -0.0]
OTHERS = [None, True, False, "", "x", "nan", "conv_3x3", [], [1, 2], [[1]], {}, {"a": 1}]
# half the replacements are odd numbers (NaN, inf, huge), half wrong types
ODD_VALUES = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(OTHERS))


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path into a JSON document (the root included)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """1-3 edits: replace a value with an odd one, delete a key/item, duplicate an item, or rename a key."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(_paths(doc)), label="path")
        if not path:
            return copy.deepcopy(data.draw(ODD_VALUES, label="root"))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = data.draw(st.sampled_from(["replace", "delete", "duplicate", "rename"]), label="action")
        if action == "replace":
            parent[key] = copy.deepcopy(data.draw(ODD_VALUES, label="value"))  # never share the listed values
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[f"{key}_"] = parent.pop(key)
    return doc


def _text(doc: Any, data: st.DataObject) -> str:
    """The document as JSON (NaN/Infinity allowed: the parser must refuse them), maybe truncated."""
    try:
        text = json.dumps(doc)
    except (ValueError, OverflowError):  # 10**400 as a float key path: write it as a literal
        text = json.dumps(doc, default=str)
    if data.draw(st.integers(0, 3), label="truncate") == 0:  # a quarter of the files are cut short
        text = text[: len(text) * data.draw(st.integers(0, 99), label="cut %") // 100]
    return text


def _clean(err: RSPNetError, path: Path) -> None:
    msg = str(err)
    assert msg and "\n" not in msg, msg
    assert str(path) in msg, msg


def _only(folder: Path, *names: str) -> None:
    """No parser writes: the folder holds exactly the input files."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@fuzz("genotype")
@given(data=st.data())
def test_fuzzed_genotype_json(tmp_path: Path, data: st.DataObject) -> None:
    folder = tmp_path / "genotype_case"
    folder.mkdir(exist_ok=True)
    path = folder / "genotype.json"
    path.write_text(_text(_mutate(Genotype.from_ops(OPS, rsp=True).to_dict(), data), data))
    try:
        genotype = Genotype.load(path)
    except RSPNetError as e:
        _clean(e, path)
    else:  # a valid result is a usable genotype: it round-trips and its weights are finite
        assert len(genotype.ops) == 3 and Genotype.from_dict(genotype.to_dict()).ops == genotype.ops
        assert all(math.isfinite(w) for e in genotype.to_dict()["edges"] for w in e["weights"])
    _only(folder, "genotype.json")


@fuzz("macro")
@given(data=st.data())
def test_fuzzed_macro_json(tmp_path: Path, data: st.DataObject) -> None:
    from rspnet.models.derived import live_nodes

    folder = tmp_path / "macro_case"
    folder.mkdir(exist_ok=True)
    path = folder / "macro.json"
    path.write_text(_text(_mutate(macro_doc(), data), data))
    try:
        macro = MacroArch.load(path)
    except RSPNetError as e:
        _clean(e, path)
    else:  # usable: every node has inputs from earlier layers, and the derived wiring can be built
        assert MacroArch.from_dict(macro.to_dict()).to_dict() == macro.to_dict()
        assert live_nodes(macro)
    _only(folder, "macro.json")


@pytest.fixture(scope="module")
def seg_checkpoint() -> dict:
    """A valid (tiny) training checkpoint as stage=train writes it: weights + rspnet metadata."""
    from rspnet.composition import compose
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.models.derived import default_macro

    cfg = compose("logger=none", "model=micro")
    module = build_seg_module(cfg, Genotype.from_ops(OPS, rsp=True), default_macro(cfg), 4)
    return {"state_dict": module.state_dict(), "rspnet": module.meta, "epoch": 0, "global_step": 1}


@fuzz("checkpoint")
@given(data=st.data())
def test_fuzzed_checkpoint_metadata(tmp_path: Path, seg_checkpoint: dict, data: st.DataObject) -> None:
    from rspnet.lit.seg_module import SegModule

    folder = tmp_path / "ckpt_case"
    folder.mkdir(exist_ok=True)
    path = folder / "model.ckpt"
    ckpt = dict(seg_checkpoint, rspnet=_mutate(seg_checkpoint["rspnet"], data))
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    raw = buf.getvalue()
    if data.draw(st.integers(0, 3), label="truncate") == 0:
        raw = raw[: len(raw) * data.draw(st.integers(0, 99), label="cut %") // 100]
    path.write_bytes(raw)
    try:
        module, meta = SegModule.from_checkpoint(path)
    except RSPNetError as e:
        _clean(e, path)
    else:  # a valid result predicts
        with torch.no_grad():
            out = module.net(torch.zeros(1, 3, 32, 32))
        assert out["out"].shape == (1, int(meta["num_classes"]), 32, 32)
    _only(folder, "model.ckpt")


LABEL_KINDS = ["truncated", "size", "rgb", "uint16", "int32", "float", "random", "empty", "values", "jpeg"]


def _label_bytes(data: st.DataObject, kind: str, h: int, w: int) -> bytes:
    """A damaged or odd label file: truncated PNG, wrong size/mode/depth, random bytes, other formats."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    arr = rng.integers(0, 12, (h, w), dtype=np.uint8)
    buf = io.BytesIO()
    if kind == "size":
        Image.fromarray(arr[: data.draw(st.integers(1, h), label="h"), : data.draw(st.integers(1, w), label="w")]).save(
            buf, "PNG"
        )
    elif kind == "rgb":
        Image.fromarray(np.stack([arr] * 3, -1)).save(buf, "PNG")
    elif kind == "uint16":
        Image.fromarray(arr.astype(np.uint16) * 300).save(buf, "PNG")
    elif kind == "int32":
        Image.fromarray(arr.astype(np.int32) - 5).save(buf, "TIFF")
    elif kind == "float":
        Image.fromarray(arr.astype(np.float32) + 0.5).save(buf, "TIFF")
    elif kind == "random":
        return rng.integers(0, 256, data.draw(st.integers(1, 400), label="n"), dtype=np.uint8).tobytes()
    elif kind == "empty":
        return b""
    elif kind == "values":
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(buf, "PNG")
    elif kind == "jpeg":
        Image.fromarray(arr).save(buf, "JPEG")
    else:
        Image.fromarray(arr).save(buf, "PNG")
        raw = buf.getvalue()
        return raw[: len(raw) * data.draw(st.integers(0, 99), label="cut %") // 100]
    return buf.getvalue()


_LABEL_CASE: dict[str, tuple[Any, bytes]] = {}


@pytest.mark.parametrize("kind", LABEL_KINDS)
@fuzz("labels")
@given(data=st.data())
def test_fuzzed_dataset_label_files(make_cfg, camvid_root: Path, kind: str, data: st.DataObject) -> None:
    from rspnet.data import build_dataset

    label = camvid_root / "trainannot" / "a.png"
    if str(camvid_root) not in _LABEL_CASE:  # once per test (the examples share the fixture): compose, keep the file
        _LABEL_CASE[str(camvid_root)] = (make_cfg("dataset=camvid", f"dataset.root={camvid_root}"), label.read_bytes())
    cfg, original = _LABEL_CASE[str(camvid_root)]
    h, w = np.asarray(Image.open(io.BytesIO(original))).shape
    label.write_bytes(_label_bytes(data, kind, h, w))
    before = sorted(p.relative_to(camvid_root) for p in camvid_root.rglob("*"))
    try:
        image, mask = build_dataset(cfg, "train", False)[0]
    except RSPNetError as e:
        _clean(e, label)
    else:  # valid: ids are classes or the ignore index, at the image size
        assert mask.shape == image.shape[-2:] and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= set(range(11)) | {255}
    assert sorted(p.relative_to(camvid_root) for p in camvid_root.rglob("*")) == before
    label.write_bytes(original)


_MAPILLARY_CASE: dict[str, tuple[Any, str]] = {}


@fuzz("mapillary_config")
@given(data=st.data())
def test_fuzzed_mapillary_label_config(make_cfg, make_mapillary, data: st.DataObject) -> None:
    """Mapillary's label definitions (config_v1.2.json: names, colours) through the dataset."""
    from rspnet.data import build_dataset

    if "root" not in _MAPILLARY_CASE:
        root = make_mapillary("v1.2")
        _MAPILLARY_CASE["root"] = (root, (root / "config_v1.2.json").read_text())
        _MAPILLARY_CASE["cfg"] = (make_cfg("dataset=mapillary", f"dataset.root={root}"), "")
    (root, original), (cfg, _) = _MAPILLARY_CASE["root"], _MAPILLARY_CASE["cfg"]
    config = root / "config_v1.2.json"
    config.write_text(_text(_mutate(json.loads(original), data), data))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    try:
        image, mask = build_dataset(cfg, "train", False)[0]
    except RSPNetError as e:
        msg = str(e)
        assert msg and "\n" not in msg and (str(config) in msg or "label" in msg), msg
    else:
        # eval keeps the label at its own size (native-resolution scoring); the image may be resized
        (h, w), (ih, iw) = mask.shape, image.shape[-2:]
        assert ih * w == iw * h and set(mask.unique().tolist()) <= set(range(19)) | {255}
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    config.write_text(original)
