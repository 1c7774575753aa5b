"""RSPNet: two-stage differentiable NAS for semantic segmentation.

Public API (docs/api.md): `compose`, `run`, `load_model`, `Segmenter`, `Model`, `Genotype`,
`MacroArch`, `cell_figure`, `trellis_figure`. Imported on first use, so `import rspnet` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "compose": "rspnet.composition",
    "run": "rspnet.composition",
    "config_dir": "rspnet.composition",
    "load_model": "rspnet.api",
    "Model": "rspnet.api",
    "Segmenter": "rspnet.segmenter",
    "list_images": "rspnet.data.images",
    "Genotype": "rspnet.genotype",
    "MacroArch": "rspnet.genotype",
    "cell_figure": "rspnet.viz.cell",
    "trellis_figure": "rspnet.viz.trellis",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from rspnet.api import Model, load_model
    from rspnet.composition import compose, config_dir, run
    from rspnet.data.images import list_images
    from rspnet.genotype import Genotype, MacroArch
    from rspnet.segmenter import Segmenter
    from rspnet.viz.cell import cell_figure
    from rspnet.viz.trellis import trellis_figure


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rspnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
