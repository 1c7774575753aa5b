"""Picture of a searched Norm-Cell: the 3-edge DAG with the chosen op on each edge."""

from __future__ import annotations

from typing import Any

from rspnet.genotype import Genotype
from rspnet.viz import new_figure

# node positions (x, y): input x0, intermediate n1/n2, output (1x1 conv-BN of concat)
_POS = {0: (0.0, 0.0), 1: (1.6, 1.0), 2: (3.2, 0.0), "out": (4.5, 0.0)}
_NAMES = {0: "x0", 1: "n1", 2: "n2", "out": "out"}


def _arrow(ax: Any, src: Any, dst: Any, label: str | None, rad: float = 0.0, dashed: bool = False) -> None:
    (x0, y0), (x1, y1) = _POS[src], _POS[dst]
    ax.annotate(
        "",
        xy=(x1, y1),
        xytext=(x0, y0),
        arrowprops=dict(
            arrowstyle="-|>",
            lw=1.5,
            color="grey" if dashed else "tab:blue",
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=16,
            shrinkB=16,
        ),
    )
    if label:
        # label at the arc's midpoint, nudged perpendicular to the chord by the curvature
        mx, my = (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2
        ax.text(
            mx,
            my,
            label,
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="tab:blue", lw=0.8),
        )


def cell_figure(genotype: Genotype, title: str | None = None) -> Any:
    """Draw x0 -> n1 -> n2 -> out with each edge labelled by its op (and softmax weight)."""
    fig = new_figure(7.5, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for edge in genotype.edges:
        # the chosen op's softmax weight (not the row's max: perturbation may pick another op)
        weight = f"\n{edge.weights[genotype.primitives.index(edge.op)]:.2f}" if edge.weights else ""
        # the long edge 0->2 arcs below the straight line so it does not cross n1's edges
        _arrow(ax, edge.src, edge.dst, f"{edge.op}{weight}", rad=0.35 if (edge.src, edge.dst) == (0, 2) else 0.0)
    _arrow(ax, 1, "out", None, dashed=True)
    _arrow(ax, 2, "out", None, dashed=True)
    for key, (x, y) in _POS.items():
        colour = "tab:green" if key in (0, "out") else "tab:orange"
        ax.scatter([x], [y], s=900, c=colour, zorder=3)
        ax.text(x, y, _NAMES[key], ha="center", va="center", fontsize=10, color="white", zorder=4, weight="bold")
    ax.text(4.5, -0.35, "1x1 conv-BN\nof concat(n1, n2)", ha="center", va="top", fontsize=7, color="grey")
    rsp = "RSP on" if genotype.rsp else "RSP off"
    ax.set_title(title or f"searched Norm-Cell ({rsp})", fontsize=10)
    ax.set_xlim(-0.5, 5.0)
    ax.set_ylim(-1.0, 1.3)
    ax.axis("off")
    return fig
