"""Stage-2 pictures: trellis with chosen paths, beta heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rspnet.genotype import MacroArch, MacroInput, MacroNode
from rspnet.viz import figure_to_rgb
from rspnet.viz.trellis import beta_heatmap, draw_trellis, trellis_figure


def _macro() -> MacroArch:
    nodes = [MacroNode(1, s, (MacroInput(0, 4, 1.0),)) for s in (4, 8)]
    nodes += [MacroNode(2, s, (MacroInput(1, s, 0.7), MacroInput(0, 4, 0.2))) for s in (4, 8)]
    return MacroArch(layers=2, scales=[4, 8], top_k=2, nodes=nodes)


def test_draw_trellis_writes_a_png(tmp_path: Path) -> None:
    path = draw_trellis(_macro(), tmp_path / "trellis.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_path_lines_are_drawn_with_width_by_score() -> None:
    fig = trellis_figure(_macro())
    widths = sorted({round(line.get_linewidth(), 2) for line in fig.axes[0].get_lines()})
    assert len(widths) == 3  # scores 1.0, 0.7, 0.2 -> three distinct widths
    assert figure_to_rgb(fig).shape[-1] == 3


def test_beta_heatmap_puts_each_weight_under_its_candidate() -> None:
    candidates = {(1, 4): [(0, 4)], (2, 4): [(0, 4), (1, 4), (1, 8)]}
    weights = {(1, 4): [1.0], (2, 4): [0.2, 0.5, 0.3]}
    fig = beta_heatmap(weights, candidates)
    grid = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert grid.shape == (2, 3)
    assert np.isnan(grid[0, 1:]).all() and grid[0, 0] == 1.0
    assert np.allclose(grid[1], [0.2, 0.5, 0.3])
