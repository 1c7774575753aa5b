"""RSPNet: two-stage differentiable NAS for semantic segmentation."""

__version__ = "0.1.0"
