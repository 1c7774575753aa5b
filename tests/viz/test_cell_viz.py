"""Cell picture and alpha heatmap: the chosen ops appear on the edges, files are atomic PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rspnet.genotype import Genotype
from rspnet.viz import figure_to_rgb, save_figure
from rspnet.viz.cell import cell_figure
from rspnet.viz.heatmap import alpha_heatmap, heatmap_figure

WEIGHTS = [[0.1, 0.2, 0.5, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6]]


def test_cell_picture_labels_every_edge_with_its_op(tmp_path: Path) -> None:
    genotype = Genotype.from_weights(WEIGHTS, rsp=False)
    texts = [t.get_text() for t in cell_figure(genotype).axes[0].texts]
    for op, weight in [("conv_5x5", "0.50"), ("conv_3x3", "0.60"), ("skip_connect", "0.60")]:
        assert any(op in t and weight in t for t in texts), (op, texts)
    path = save_figure(cell_figure(genotype), tmp_path / "cell.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*.tmp"))


def test_alpha_heatmap_renders_and_annotates_weights() -> None:
    fig = alpha_heatmap(np.asarray(WEIGHTS))
    assert "0.60" in [t.get_text() for t in fig.axes[0].texts]
    image = figure_to_rgb(fig)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_heatmap_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="does not match"):
        heatmap_figure(np.zeros((2, 3)), ["a", "b"], ["x", "y"])
