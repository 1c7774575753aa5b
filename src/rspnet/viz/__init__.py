"""Pictures: cell graph, alpha/beta heatmaps, trellis drawings, mask colouring.

The three figure helpers below are shared by every drawing module.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from rspnet.utils.io import atomic_write_bytes


def new_figure(width: float = 6.0, height: float = 4.0) -> Any:
    """A fresh matplotlib Figure on the Agg canvas (no display, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig: Any) -> np.ndarray:
    """Render a figure to an H x W x 3 uint8 array (what `utils.loggers.log_image` takes)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Atomically save a figure; the format (png, svg, pdf) comes from the suffix."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
