"""Pictures over epochs: learning curves (losses, selection-split and val mIoU) and the evolution of
the architecture weights (softmax(alpha) per cell edge, softmax(beta) / path scores per trellis node)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rspnet.viz import new_figure


def learning_curves_figure(rows: Sequence[Mapping[str, Any]], title: str = "learning curves") -> Any:
    """Per epoch row ({"epoch": e, "<metric>": value}): losses on the left, mIoU on the right."""
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    fig = new_figure(9.0, 3.2)
    panels = (("loss", [k for k in keys if "loss" in k]), ("mIoU", [k for k in keys if k.endswith("miou")]))
    for i, (label, names) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for name in names:
            points = [(row["epoch"], float(row[name])) for row in rows if _finite(row.get(name))]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=2, label=name)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def evolution_figure(
    epochs: Sequence[int], series: Mapping[str, Mapping[str, Sequence[float]]], title: str, ncols: int = 4
) -> Any:
    """One small panel per group (a cell edge, a trellis node), one line per candidate over `epochs`;
    groups with a single candidate (nothing to decide) are left out."""
    groups = [g for g in series if len(series[g]) > 1] or list(series)
    ncols = max(1, min(ncols, len(groups)))
    nrows = max(1, math.ceil(len(groups) / ncols))
    fig = new_figure(2.6 * ncols, 1.9 * nrows + 0.4)
    for i, group in enumerate(groups):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for label, values in series[group].items():
            ax.plot(list(epochs), list(values), label=label, linewidth=1)
        ax.set_title(group, fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=6)
        if i == 0 or list(series[group]) != list(series[groups[0]]):
            ax.legend(fontsize=5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
