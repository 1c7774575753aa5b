"""Generic annotated heatmap (alpha: edges x ops; beta: nodes x candidate inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES
from rspnet.viz import new_figure


def heatmap_figure(
    matrix: Any,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    annotate: bool = True,
    vmin: float | None = 0.0,
    vmax: float | None = None,
) -> Any:
    """Matrix [R, C] as a heatmap with labelled axes; NaN cells are left blank."""
    grid = np.asarray(matrix, dtype=float)
    if grid.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {grid.shape} does not match {len(row_labels)} row and {len(col_labels)} column labels"
        )
    rows, cols = grid.shape
    fig = new_figure(1.5 + 0.9 * cols, 1.0 + 0.45 * rows)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(cols), list(col_labels), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(rows), list(row_labels), fontsize=8)
    if annotate:
        hi = np.nanmax(grid) if np.isfinite(grid).any() else 0.0
        for r in range(rows):
            for c in range(cols):
                if np.isfinite(grid[r, c]):
                    # dark text on the bright (high) cells of viridis, white elsewhere
                    colour = "black" if grid[r, c] > 0.6 * hi else "white"
                    ax.text(c, r, f"{grid[r, c]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    return fig


def alpha_heatmap(weights: Any, title: str = "softmax(alpha)") -> Any:
    """softmax(alpha) [3, 5]: one row per cell edge, one column per primitive."""
    return heatmap_figure(weights, [f"edge {a}->{b}" for a, b in EDGES], PRIMITIVES, title=title)


def confusion_figure(confmat: Any, classes: Sequence[str], title: str = "confusion matrix") -> Any:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction); rows without GT stay blank."""
    cm = np.asarray(confmat, dtype=float)
    gt = cm.sum(1, keepdims=True)
    norm = np.where(gt > 0, cm / np.maximum(gt, 1.0), np.nan)
    fig = heatmap_figure(
        norm,
        list(classes),
        list(classes),
        title=f"{title} (rows: ground truth, normalised)",
        annotate=len(classes) <= 24,
        vmin=0.0,
        vmax=1.0,
    )
    ax = fig.axes[0]
    ax.set_xlabel("prediction", fontsize=8)
    ax.set_ylabel("ground truth", fontsize=8)
    return fig
