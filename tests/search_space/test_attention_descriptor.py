"""SPEC §2.5 (c): CAM descriptors that BatchNorm cannot zero, equal in train and eval mode; beta-only scoring."""

from __future__ import annotations

import torch

from rspnet.search_space.attention import PathAttention, path_descriptor
from rspnet.search_space.trellis import Align


def _warm_align(seed: int = 0) -> tuple[Align, torch.Tensor]:
    """A search-net alignment (1x1 conv-BN affine=False, upsampled x2) with settled running stats."""
    torch.manual_seed(seed)
    align = Align(16, 8, affine=False)
    # inputs with per-channel offsets, as real feature maps have (non-zero channel means)
    offset = torch.linspace(-2.0, 3.0, 16)[None, :, None, None]
    align.train()
    with torch.no_grad():
        for _ in range(60):
            align(torch.randn(4, 16, 6, 8) + offset, (12, 16))
    return align, torch.randn(4, 16, 6, 8) + offset


def test_descriptor_is_non_zero_at_batch_one() -> None:
    align, x = _warm_align()
    align.train()
    z = align(x[:1], (12, 16))  # a resized path, batch 1, BN in train mode
    assert z.mean(dim=(-2, -1)).abs().max() < 1e-5  # the old GAP(z) descriptor: all zero
    g = path_descriptor(z)
    assert g.shape == (1, 16) and float(g.norm()) > 1.0


def test_descriptor_norms_agree_between_train_and_eval_mode() -> None:
    align, x = _warm_align()
    # a batch whose images share content (one scene, one lighting) is off the running mean;
    # train-mode BN removes that shift, eval-mode BN keeps it
    x = x + 0.5 * torch.randn(1, 16, 1, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z_train = align.train()(x, (12, 16))
        z_eval = align.eval()(x, (12, 16))
    new = path_descriptor(z_train).norm(dim=-1) / path_descriptor(z_eval).norm(dim=-1)
    assert ((new > 0.5) & (new < 2.0)).all(), new
    # the same check fails for GAP(z): train mode removes the batch mean that eval mode keeps
    old = z_train.mean(dim=(-2, -1)).norm(dim=-1) / z_eval.mean(dim=(-2, -1)).norm(dim=-1)
    assert not ((old > 0.5) & (old < 2.0)).all(), old


def test_descriptor_has_finite_gradients_on_constant_maps() -> None:
    z = torch.ones(2, 4, 3, 3, requires_grad=True)
    path_descriptor(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_beta_only_scoring_has_no_cam_and_ignores_content() -> None:
    pam = PathAttention(channels=8, num_candidates=3, use_cam=False)
    assert pam.cam is None and [n for n, _ in pam.named_parameters()] == ["beta"]
    with torch.no_grad():
        pam.beta.copy_(torch.tensor([0.0, 1.0, -1.0]))
    zs = [torch.randn(5, 8, 4, 4) * (i + 1) for i in range(3)]
    _, w = pam(zs)
    assert torch.allclose(w, torch.softmax(pam.beta.detach(), 0).expand(5, -1))
