"""Safe weights: every checkpoint load is torch.load(weights_only=True), on whatever torch/Lightning pair
(Lightning's own resume passes weights_only=None, which older torch reads as False); `stage=export
stage.format=safetensors` writes weights plus metadata that `rspnet.load_model`, eval and predict read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rspnet
from rspnet.errors import ArtifactError
from rspnet.lit.macro_module import MacroSearchModule
from rspnet.lit.search_module import SearchModule
from rspnet.lit.seg_module import SegModule
from rspnet.segmenter import Segmenter
from rspnet.stages import run_stage as run
from rspnet.stages.train import init_from_checkpoint
from rspnet.utils.checkpoint import net_state, read_checkpoint
from tests.conftest import CELL, MACRO, TRAIN

pytestmark = pytest.mark.reliability

LoadCalls = list[tuple[str, object]]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> LoadCalls:
    """Spy on torch.load: records (file, weights_only) of every call, and refuses any call without weights_only=True."""
    calls: LoadCalls = []
    real = torch.load

    def spy(f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        name = str(f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", f))  # a path or an open file
        calls.append((name, kwargs.get("weights_only")))
        if kwargs.get("weights_only") is not True:
            raise AssertionError(f"torch.load({name}) without weights_only=True: {kwargs.get('weights_only')!r}")
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def _interrupt_at_epoch(epoch: int) -> Callable[[object], None]:
    def on_train_epoch_start(self: object) -> None:
        if self.current_epoch == epoch:  # type: ignore[attr-defined]
            raise RuntimeError("interrupted")

    return on_train_epoch_start


def _interrupted(make_cfg, module: type, args: tuple[str, ...], out: Path) -> None:
    """A 2-epoch run of `args` stopped at the start of epoch 2 (last.ckpt holds epoch 1)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(module, "on_train_epoch_start", _interrupt_at_epoch(1), raising=False)
        with pytest.raises(RuntimeError, match="interrupted"):
            run(make_cfg(*args, out=out))


def _assert_weights_only(calls: LoadCalls, ckpt: Path) -> None:
    assert ckpt in [Path(name) for name, _ in calls], f"{ckpt} was never read through torch.load: {calls}"
    assert all(w is True for _, w in calls), calls


@pytest.mark.parametrize(
    "stage, module", [(CELL, SearchModule), (MACRO, MacroSearchModule)], ids=["cell_search", "macro_search"]
)
def test_search_resume_loads_with_weights_only(
    make_cfg, tmp_path: Path, searched_genotype_file: Path, stage: tuple[str, ...], module: type, loads: LoadCalls
) -> None:
    args = (*stage, "trainer.max_epochs=2", f"genotype={searched_genotype_file}")
    _interrupted(make_cfg, module, args, tmp_path / "run")
    loads.clear()
    run(make_cfg(*args, "ckpt_path=last", out=tmp_path / "run"))  # Lightning's resume: trainer.fit(ckpt_path=)
    _assert_weights_only(loads, tmp_path / "run" / "checkpoints" / "last.ckpt")


def test_train_resume_init_eval_predict_export_and_api_load_with_weights_only(
    make_cfg, tmp_path: Path, searched_genotype_file: Path, loads: LoadCalls
) -> None:
    args = (*TRAIN, "trainer.max_epochs=2", f"genotype={searched_genotype_file}")
    out = tmp_path / "train"
    _interrupted(make_cfg, SegModule, args, out)
    last = out / "checkpoints" / "last.ckpt"
    loads.clear()
    run(make_cfg(*args, "ckpt_path=last", out=out))  # resume
    _assert_weights_only(loads, last)
    tiny = ("debug=tiny", "model=micro", f"ckpt={last}")
    steps: list[Callable[[], object]] = [
        lambda: run(make_cfg(*args, "trainer.max_epochs=1", f"train.init_ckpt={last}", out=tmp_path / "init")),
        lambda: run(make_cfg("stage=eval", *tiny, out=tmp_path / "eval")),
        lambda: run(make_cfg("stage=predict", *tiny, "predict.limit=1", out=tmp_path / "predict")),
        lambda: run(make_cfg("stage=export", *tiny, "stage.format=safetensors", out=tmp_path / "export")),
        lambda: rspnet.load_model(last),
        lambda: Segmenter(str(last), device="cpu"),
    ]
    for step in steps:
        loads.clear()
        step()
        _assert_weights_only(loads, last)


class _RunsCode:
    """A pickled object whose unpickling would create `marker` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_runs_code_is_refused_on_search_resume(make_cfg, tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, evil)
    with pytest.raises(ArtifactError, match=r"evil.ckpt: cannot read checkpoint \(UnpicklingError"):
        run(make_cfg(*CELL, f"ckpt_path={evil}", out=tmp_path / "run"))
    with pytest.raises(ArtifactError, match=r"evil.ckpt: cannot read checkpoint"):
        rspnet.load_model(evil)
    assert not marker.exists()


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of tiny stage=train (micro net, paper-like genotype)."""
    from rspnet.architecture import PAPER_GENOTYPE
    from rspnet.composition import compose

    out = tmp_path_factory.mktemp("safe_trained")
    cfg = compose("logger=none", "print_config=false", *TRAIN, f"genotype={PAPER_GENOTYPE}", f"paths.output_dir={out}")
    return Path(run(cfg)["last_ckpt"])


def _export(make_cfg, ckpt: Path, out: Path) -> Path:
    report = run(make_cfg("stage=export", "debug=tiny", f"ckpt={ckpt}", "stage.format=safetensors", out=out))
    assert report["format"] == "safetensors" and json.loads((out / "export.json").read_text()) == report
    return out / "model.safetensors"


def test_safetensors_export_loads_with_the_checkpoints_logits_and_metadata(
    make_cfg, tmp_path: Path, trained_ckpt: Path
) -> None:
    path = _export(make_cfg, trained_ckpt, tmp_path / "export")
    with safe_open(str(path), framework="pt") as f:  # a safetensors file: JSON header + raw tensors, no pickle
        assert f.metadata()["format"] == "rspnet.weights/1"
    weights, ckpt = rspnet.load_model(path), rspnet.load_model(trained_ckpt)
    assert weights.kind == "safetensors" and ckpt.kind == "checkpoint"
    assert (weights.classes, weights.palette, weights.crop_size) == (ckpt.classes, ckpt.palette, ckpt.crop_size)
    assert weights.meta == ckpt.meta  # genotype, macro, model/rsp/head config, format: all of it
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the same weights through the same code in one process: bit-identical logits
        assert torch.equal(weights(x), ckpt(x))
    # train.init_ckpt, eval and predict take it where they take a checkpoint
    module, _ = SegModule.from_checkpoint(trained_ckpt)
    with torch.no_grad():
        for t in module.net.state_dict().values():
            t.zero_()
    init_from_checkpoint(module, str(path))
    assert all(torch.equal(v, module.net.state_dict()[k]) for k, v in net_state(read_checkpoint(trained_ckpt)).items())
    tiny = ("debug=tiny", "model=micro", f"ckpt={path}")
    eval_w = run(make_cfg("stage=eval", *tiny, out=tmp_path / "eval_w"))
    eval_c = run(make_cfg("stage=eval", "debug=tiny", "model=micro", f"ckpt={trained_ckpt}", out=tmp_path / "eval_c"))
    assert eval_w["miou"] == pytest.approx(eval_c["miou"], abs=1e-6)
    assert run(make_cfg("stage=predict", *tiny, "predict.limit=1", out=tmp_path / "pred"))["num_images"] == 1


def _bad_header(path: Path, metadata: dict[str, str] | None) -> Path:
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "metadata, match",
    [
        (None, r"header format is None, not 'rspnet.weights/1'"),
        ({"format": "rspnet.weights/1"}, r"header metadata 'rspnet' is missing or not JSON"),
        ({"format": "rspnet.weights/1", "rspnet": "{not json"}, r"header metadata 'rspnet' is missing or not JSON"),
        ({"format": "rspnet.weights/1", "rspnet": "{}"}, r"not an rspnet training checkpoint"),
    ],
    ids=["no-metadata", "no-rspnet-key", "bad-json", "empty-meta"],
)
def test_a_safetensors_file_without_good_metadata_is_one_clear_error(
    tmp_path: Path, metadata: dict[str, str] | None, match: str
) -> None:
    path = _bad_header(tmp_path / "model.safetensors", metadata)
    with pytest.raises(ArtifactError, match=match) as err:
        rspnet.load_model(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_truncated_safetensors_file_is_one_clear_error(tmp_path: Path) -> None:
    path = _bad_header(tmp_path / "model.safetensors", {"format": "rspnet.weights/1", "rspnet": "{}"})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ArtifactError, match=r"model.safetensors: cannot read safetensors file"):
        rspnet.load_model(path)


def test_a_safetensors_file_cannot_resume_a_run(make_cfg, tmp_path: Path, trained_ckpt: Path) -> None:
    path = _export(make_cfg, trained_ckpt, tmp_path / "export")
    with pytest.raises(ArtifactError, match=r"model.safetensors: a .safetensors file holds the weights only"):
        run(make_cfg(*CELL, f"ckpt_path={path}", out=tmp_path / "run"))


def test_export_refuses_an_unknown_format(make_cfg, tmp_path: Path, trained_ckpt: Path) -> None:
    from rspnet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stage.format=pickle: choose one of onnx, safetensors"):
        run(make_cfg("stage=export", "debug=tiny", f"ckpt={trained_ckpt}", "stage.format=pickle", out=tmp_path))
