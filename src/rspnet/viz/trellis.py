"""Pictures of the stage-2 result: the trellis with chosen paths, and beta heatmaps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rspnet.genotype import STEM, MacroArch
from rspnet.viz import new_figure, save_figure
from rspnet.viz.heatmap import heatmap_figure


def trellis_figure(macro: MacroArch, title: str | None = None) -> Any:
    """Nodes on a layer x scale grid; each chosen input path drawn with width proportional to its score."""
    fig = new_figure(1.2 + 1.1 * (macro.layers + 1), 1.0 + 0.9 * len(macro.scales))
    ax = fig.add_subplot(1, 1, 1)
    rows = {s: i for i, s in enumerate(macro.scales)}
    top = max((i.score for n in macro.nodes for i in n.inputs), default=1.0) or 1.0
    for node in macro.nodes:
        for inp in node.inputs:
            xs, ys = (inp.layer, node.layer), (rows[inp.scale], rows[node.scale])
            # a skip over several layers arcs away from the straight layer-to-layer lines
            bend = 0.15 * (node.layer - inp.layer - 1)
            mid_x, mid_y = sum(xs) / 2, sum(ys) / 2 + bend
            t = np.linspace(0.0, 1.0, 20)
            curve_x = (1 - t) ** 2 * xs[0] + 2 * (1 - t) * t * mid_x + t**2 * xs[1]
            curve_y = (1 - t) ** 2 * ys[0] + 2 * (1 - t) * t * mid_y + t**2 * ys[1]
            width = 0.5 + 4.5 * max(inp.score, 0.0) / top
            ax.plot(curve_x, curve_y, color="tab:red", lw=width, alpha=0.7, zorder=1)
    grid = [(l, s) for l in range(1, macro.layers + 1) for s in macro.scales]
    ax.scatter([l for l, _ in grid], [rows[s] for _, s in grid], s=160, c="tab:blue", zorder=2)
    ax.scatter([STEM[0]], [rows[STEM[1]]], s=220, c="tab:green", marker="s", zorder=2)
    ax.set_xticks(range(macro.layers + 1), ["stem"] + [str(l) for l in range(1, macro.layers + 1)])
    ax.set_yticks(range(len(macro.scales)), [f"1/{s}" for s in macro.scales])
    ax.invert_yaxis()
    ax.set_xlabel("layer")
    ax.set_ylabel("output stride")
    ax.set_title(title or f"searched trellis (top-{macro.top_k} paths, width ~ score)")
    ax.set_xlim(-0.5, macro.layers + 0.5)
    ax.set_ylim(len(macro.scales) - 0.5, -0.5)
    return fig


def draw_trellis(macro: MacroArch, path: str | Path, title: str | None = None) -> Path:
    """Render `macro` to `path` (.png or .svg), atomically."""
    return save_figure(trellis_figure(macro, title), path)


def beta_heatmap(
    weights: Mapping[tuple[int, int], Sequence[float]],
    candidates: Mapping[tuple[int, int], Sequence[tuple[int, int]]],
    title: str = "softmax(beta) per node",
) -> Any:
    """Heatmap: one row per node, one column per possible input node (blank = not a candidate)."""
    nodes = list(weights)
    columns = sorted({c for n in nodes for c in candidates[n]})
    col = {c: i for i, c in enumerate(columns)}
    grid = np.full((len(nodes), len(columns)), math.nan)
    for r, node in enumerate(nodes):
        for c, w in zip(candidates[node], weights[node]):
            grid[r, col[c]] = float(w)
    labels = [f"({l},{s})" for l, s in columns]
    # per-cell numbers only while they stay readable
    return heatmap_figure(grid, [f"({l},{s})" for l, s in nodes], labels, title=title, annotate=len(columns) <= 12)
