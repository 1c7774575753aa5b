"""Public API: lazy import, compose/run, load_model (checkpoint, ONNX, zoo), Segmenter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rspnet
from rspnet.errors import ArtifactError, ConfigError


def _image(h: int = 40, w: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_import_is_lazy_and_names_resolve() -> None:
    code = "import sys, rspnet; print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    assert rspnet.Segmenter.__name__ == "Segmenter" and callable(rspnet.load_model)
    with pytest.raises(AttributeError):
        rspnet.no_such_name  # noqa: B018


def test_compose_and_run_behave_like_the_cli(tmp_path: Path) -> None:
    import rspnet.cli

    assert rspnet.config_dir() == str(rspnet.cli.CONFIG_DIR)
    cfg = rspnet.compose("model=small", "rsp=off")
    assert cfg.model.name == "small" and cfg.rsp.enabled is False and cfg.paths.output_dir
    result = rspnet.run("summary", "print_config=false", "logger=none", f"paths.output_dir={tmp_path}")
    assert (tmp_path / "config.yaml").is_file() and json.loads((tmp_path / "summary.json").read_text())[
        "params"
    ] == result["params"]
    with pytest.raises(ConfigError, match="nope"):
        rspnet.run("nope", f"paths.output_dir={tmp_path}")


def test_segmenter_matches_the_eval_inference(tiny_ckpt: Path) -> None:
    from rspnet.data.images import to_tensor
    from rspnet.inference import infer
    from rspnet.lit.seg_module import SegModule

    model = rspnet.load_model(tiny_ckpt)
    assert (
        model.kind == "checkpoint"
        and model.num_classes == 19
        and len(model.palette) == 19
        and model.classes[0] == "road"
    )
    seg = rspnet.Segmenter(model, inference="slide", device="cpu", crop=(32, 32))
    img = _image()
    mask = seg.predict(img)
    module, _ = SegModule.from_checkpoint(tiny_ckpt)
    with torch.no_grad():
        ref = infer(module, to_tensor(img)[None], "slide", crop=(32, 32)).argmax(1)[0].numpy()
    assert mask.shape == (40, 70) and mask.dtype == np.int64 and (mask == ref).all()
    mask2, probs = seg.predict(img, probs=True)
    assert (
        probs.shape == (19, 40, 70) and np.allclose(probs.sum(0), 1.0, atol=1e-4) and (probs.argmax(0) == mask2).all()
    )
    assert seg.colorize(mask).shape == (40, 70, 3) and seg.overlay(img, mask, 0.3).dtype == np.uint8


def test_predict_lists_folders_and_paths_in_batches(tiny_ckpt: Path, tmp_path: Path) -> None:
    images = [_image(40, 70, 0), _image(32, 48, 1), _image(40, 70, 2)]
    for i, a in enumerate(images):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    one = rspnet.Segmenter(tiny_ckpt, batch_size=1).predict(images)
    batched = rspnet.Segmenter(tiny_ckpt, batch_size=3, inference="multiscale_flip", scales=[1.0])
    folder = batched.predict(tmp_path)
    assert [m.shape for m in folder] == [(40, 70), (32, 48), (40, 70)]
    assert batched.predict(tmp_path / "1.png").shape == (32, 48)
    plain = rspnet.Segmenter(tiny_ckpt, batch_size=3).predict([str(tmp_path / f"{i}.png") for i in range(3)])
    assert all((a == b).all() for a, b in zip(one, plain))  # batching does not change the result


def test_onnx_model_has_classes_and_the_same_predictions(tiny_ckpt: Path, make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.export import run as run_export

    run_export(make_cfg("stage=export", f"ckpt={tiny_ckpt}", "stage.size=[64,64]", out=tmp_path))
    onnx = rspnet.load_model(tmp_path / "model.onnx")
    ckpt = rspnet.load_model(tiny_ckpt)
    assert onnx.kind == "onnx" and onnx.classes == ckpt.classes and onnx.palette == ckpt.palette
    assert onnx.crop_size == ckpt.crop_size and onnx.params() > 0
    img = _image(64, 96)
    a, b = rspnet.Segmenter(onnx).predict(img), rspnet.Segmenter(ckpt).predict(img)
    assert (a == b).mean() > 0.99


def test_zoo_models_are_untrained_architectures() -> None:
    import yaml

    from rspnet.api import zoo_file

    entry = {e["name"]: e for e in yaml.safe_load(zoo_file().read_text())["models"]}["paper_like-tiny"]
    model = rspnet.load_model("zoo:paper_like-tiny")
    assert model.kind == "zoo" and not model.trained and model.params() == entry["params"] and model.num_classes == 19
    with pytest.raises(ConfigError, match="zoo:nope is not in zoo.yaml"):
        rspnet.load_model("zoo:nope")


def test_bad_arguments_are_clear_errors(tiny_ckpt: Path, tmp_path: Path) -> None:
    from rspnet.errors import DataError

    with pytest.raises(ArtifactError, match="model not found"):
        rspnet.load_model(tmp_path / "missing.ckpt")
    with pytest.raises(ConfigError, match="fp16"):
        rspnet.Segmenter(tiny_ckpt, device="cpu", fp16=True)
    with pytest.raises(ConfigError, match="inference=tiles is unknown"):
        rspnet.Segmenter(tiny_ckpt, inference="tiles")
    with pytest.raises(DataError, match="must be uint8"):
        rspnet.Segmenter(tiny_ckpt).predict(np.zeros((8, 8, 3), dtype=np.float32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        rspnet.Segmenter(tiny_ckpt).predict(tmp_path / "empty")


def test_run_from_a_saved_config(tiny_ckpt: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg

    saved = tmp_path / "saved.yaml"  # what a run of the tiny setup saves as config.yaml
    OmegaConf.save(compose_cfg(tmp_path / "old", "stage=train"), saved, resolve=True)
    result = rspnet.run("eval", f"ckpt={tiny_ckpt}", f"paths.output_dir={tmp_path / 'new'}", "split=val", config=saved)
    assert result["num_images"] == 4  # the saved run's dataset.num_val, not the default
    assert (tmp_path / "new" / "metrics.json").is_file() and (tmp_path / "new" / "config.yaml").is_file()
    assert not (tmp_path / "old").exists()  # the saved run's dir is not written to
    with pytest.raises(ConfigError, match="group choices"):
        rspnet.run("eval", "dataset=camvid", config=saved)


def test_a_checkpoint_trained_with_compile_loads_uncompiled(tiny_ckpt: Path, tmp_path: Path) -> None:
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["rspnet"]["config"]["train"]["compile"] = True
    torch.save(ckpt, tmp_path / "compiled.ckpt")
    net = rspnet.load_model(tmp_path / "compiled.ckpt").net
    assert getattr(net, "_compiled_call_impl", None) is None  # predicting never waits for torch.compile


def _conv_onnx(path: Path, channels: int, meta: dict | None) -> Path:
    """A 1x1-conv "segmenter" with `channels` output channels and `meta` as its rspnet metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((channels, 3, 1, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "seg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "rspnet", json.dumps(meta)
    onnx.save(model, str(path))
    return path


GOOD_META = {"num_classes": 2, "classes": ["a", "b"], "palette": [[0, 0, 0], [255, 0, 0]]}
BAD_META = {
    "class count vs channels": (
        {"num_classes": 3, "classes": ["a", "b", "c"]},
        "says 3 classes but the network outputs 2",
    ),
    "class names": ({**GOOD_META, "classes": ["a", "b", "c"]}, "3 class names for 2 classes"),
    "palette length": ({**GOOD_META, "palette": [[0, 0, 0]]}, "palette has 1 colours for 2 classes"),
    "palette values": ({**GOOD_META, "palette": [[0, 0, 0], [256, 0, 0]]}, "not \\[R, G, B\\] values"),
    "not JSON": ("{classes", "metadata is not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_META)
def test_onnx_metadata_that_contradicts_the_network_is_one_clear_error(tmp_path: Path, case: str) -> None:
    meta, expected = BAD_META[case]
    path = _conv_onnx(tmp_path / "m.onnx", 2, None)
    if isinstance(meta, str):  # raw (broken) metadata text
        import onnx

        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = "rspnet", meta
        onnx.save(model, str(path))
    else:
        _conv_onnx(path, 2, meta)
    with pytest.raises(ArtifactError, match=f"m.onnx: .*{expected}.*stage=export"):
        rspnet.load_model(path)


def test_logits_with_another_class_count_than_the_model_are_one_clear_error() -> None:
    # the guard for networks whose channel count is only known when they run (symbolic ONNX outputs)
    from rspnet.api import Model

    model = Model(torch.nn.Conv2d(3, 2, 1), list("abc"), [[0, 0, 0]] * 3, "net.onnx", "onnx")
    with pytest.raises(ArtifactError, match="net.onnx: the network outputs 2 channels but the model has 3 classes"):
        rspnet.Segmenter(model).predict(_image(8, 8))


def test_segmenter_batches_inputs_of_equal_shape_and_keeps_their_order(tiny_ckpt: Path) -> None:
    from rspnet.data.images import to_tensor
    from rspnet.inference import upsample_argmax

    seg = rspnet.Segmenter(tiny_ckpt, batch_size=3)
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(32, 48), (40, 40), (32, 48)]]
    xs, sizes = [to_tensor(r) for r in rgbs], [(64, 96), (40, 40), (32, 48)]
    real, calls = seg.scores, []
    seg.scores = lambda x: calls.append(x.shape[0]) or real(x)  # type: ignore[method-assign]
    maps = seg.predict_inputs(xs, sizes, torch.uint8)
    assert sorted(calls) == [1, 2]  # the two 32x48 inputs in one call
    for x, size, m in zip(xs, sizes, maps):
        assert m.dtype == np.uint8 and m.shape == size
        assert (m == upsample_argmax(real(x[None]), size)[0].numpy()).all()
    pairs = [pair for batch in seg.batches(iter(rgbs)) for pair in batch]
    assert [rgb.shape for rgb, _ in pairs] == [r.shape for r in rgbs]
    assert all((pred == seg.predict(rgb)).all() for rgb, pred in pairs)


def test_losses_data_and_the_segmenter_load_no_stage() -> None:
    code = (
        "import sys, rspnet.losses, rspnet.data.stats, rspnet.data.images, rspnet.data.video, rspnet.segmenter; "
        "print(sorted(m for m in sys.modules if m.startswith('rspnet.stages')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
