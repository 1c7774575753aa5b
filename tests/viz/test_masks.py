"""Mask colouring and overlays."""

from __future__ import annotations

import numpy as np
import pytest

from rspnet.viz.masks import colorize, overlay

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_colorize_maps_ids_and_paints_ignore_black() -> None:
    mask = np.array([[0, 1], [2, 255]])
    rgb = colorize(mask, PALETTE)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [0, 0, 255] and rgb[1, 1].tolist() == [0, 0, 0]


def test_overlay_blends_with_alpha() -> None:
    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.zeros((2, 3), np.int64)
    assert (overlay(image, mask, PALETTE, alpha=0.0) == image).all()
    assert overlay(image, mask, PALETTE, alpha=1.0)[0, 0].tolist() == [255, 0, 0]
    assert overlay(image, mask, PALETTE, alpha=0.5)[0, 0].tolist() == [178, 50, 50]
    with pytest.raises(ValueError, match="sizes differ"):
        overlay(image, np.zeros((3, 3), np.int64), PALETTE)


def test_denormalise_inverts_the_eval_pipeline_and_panel_is_pred_then_gt() -> None:
    import torch

    from rspnet.data.images import prepare
    from rspnet.viz.masks import denormalise, prediction_panel

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    x = prepare(rgb)
    assert np.abs(denormalise(x).astype(int) - rgb).max() <= 1
    pred, target = torch.zeros(6, 5, dtype=torch.long), torch.full((6, 5), 2)
    panel = prediction_panel(x, pred, target, PALETTE, alpha=1.0)
    assert panel.shape == (6, 10, 3) and panel[0, 0].tolist() == [255, 0, 0] and panel[0, 5].tolist() == [0, 0, 255]
