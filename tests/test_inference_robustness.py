"""Inference on any input: odd sizes, grayscale/RGBA/palette files, and very large images through
the sliding window, which only ever puts one window on the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet.genotype import Genotype
from rspnet.inference import infer
from rspnet.models.derived import DerivedNet, default_macro
from tests.conftest import OPS, TRAIN

pytestmark = pytest.mark.reliability

SIZES = [(33, 47), (17, 100), (65, 64), (7, 9)]


@pytest.fixture
def tiny_net(make_cfg) -> torch.nn.Module:
    """A derived network of the tiny preset at B = 4 with 3 classes (eval mode)."""
    cfg = make_cfg(*TRAIN)
    torch.manual_seed(0)
    return DerivedNet.from_cfg(cfg, Genotype.from_ops(OPS, rsp=True), default_macro(cfg), 3).eval()


@pytest.mark.parametrize("mode", ["whole", "slide", "multiscale_flip"])
def test_odd_sizes_give_logits_at_the_input_size(tiny_net: torch.nn.Module, mode: str) -> None:
    with torch.no_grad():
        for h, w in SIZES:
            scores = infer(tiny_net, torch.randn(1, 3, h, w), mode, crop=(32, 32), scales=(0.75, 1.0, 1.25))
            assert scores.shape == (1, 3, h, w) and torch.isfinite(scores).all(), (mode, h, w)


class Recorder(torch.nn.Module):
    """Wraps a net; counts forward calls and the largest input it saw."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls, self.max_pixels = net, 0, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        self.max_pixels = max(self.max_pixels, x.shape[-2] * x.shape[-1])
        return self.net(x)


def test_a_2048x1024_image_is_processed_window_by_window(tiny_net: torch.nn.Module) -> None:
    net = Recorder(tiny_net)
    crop, stride = (256, 512), (256, 512)
    with torch.no_grad():
        scores = infer(net, torch.randn(1, 3, 1024, 2048), "slide", crop=crop, stride=stride)
    assert scores.shape == (1, 3, 1024, 2048) and torch.isfinite(scores).all()
    # the network never sees more than one window: activation memory is bounded by the window
    assert net.calls == (1024 // 256) * (2048 // 512) and net.max_pixels == 256 * 512
    # inference.sw_batch=4: 4 windows per call, still window-sized inputs (memory bounded by 4 windows)
    batched = Recorder(tiny_net)
    with torch.no_grad():
        again = infer(batched, torch.randn(1, 3, 1024, 2048), "slide", crop=crop, stride=stride, sw_batch=4)
    assert again.shape == scores.shape and batched.calls == 4 and batched.max_pixels == 256 * 512


@pytest.fixture
def trained_ckpt(make_cfg, tmp_path: Path, searched_genotype_file: Path) -> Path:
    """A one-step training checkpoint of the tiny preset."""
    from rspnet.stages.train import run as run_train

    out = tmp_path / "trained"
    run_train(
        make_cfg(
            *TRAIN,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            f"genotype={searched_genotype_file}",
            out=out,
        )
    )
    return out / "checkpoints" / "last.ckpt"


def test_predict_converts_grayscale_alpha_and_palette_files_at_odd_sizes(
    make_cfg, tmp_path: Path, trained_ckpt: Path
) -> None:
    from rspnet.stages.predict import run as run_predict

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    modes = {
        "gray.png": "L",
        "gray_alpha.png": "LA",
        "rgba.png": "RGBA",
        "palette.png": "P",
        "photo.jpg": "RGB",
        "cmyk.jpg": "CMYK",
    }
    sizes = {}
    for (name, mode), (h, w) in zip(modes.items(), [*SIZES, (31, 45), (50, 33)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(folder / name)
        sizes[Path(name).stem] = (w, h)
    out = tmp_path / "pred"
    run_predict(
        make_cfg(
            "stage=predict",
            f"ckpt={trained_ckpt}",
            f"predict.input={folder}",
            "inference.mode=slide",
            "inference.slide_crop=[32,32]",
            out=out,
        )
    )
    written = {p.stem: p for p in out.rglob("*.png") if "overlay" in p.parts}
    assert written.keys() == sizes.keys()
    for stem, path in written.items():
        with Image.open(path) as im:
            assert im.size == sizes[stem], stem
