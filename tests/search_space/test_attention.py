"""PAM/CAM path scoring (SPEC §2.5): non-degenerate, learns which path carries the signal."""

from __future__ import annotations

import pytest
import torch

from rspnet.search_space.attention import PathAttention


def _candidates(k: int, b: int = 4, c: int = 8, hw: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # different per-candidate offsets so the channel descriptors differ
    return [torch.randn(b, c, hw, hw, generator=g) + 0.5 * i for i in range(k)]


def test_weights_are_a_softmax_over_paths_and_differ_across_candidates() -> None:
    torch.manual_seed(0)
    pam = PathAttention(channels=8, num_candidates=5, hidden=16)
    out, w = pam(_candidates(5))
    assert out.shape == (4, 8, 4, 4) and w.shape == (4, 5)
    assert torch.allclose(w.sum(-1), torch.ones(4))
    # the literal Eq. 10-11 would give every path the same score; ours must not
    assert w.std(dim=-1).min() > 1e-4
    assert len({round(v, 6) for v in w.mean(0).tolist()}) == 5


def test_node_input_is_the_weighted_sum() -> None:
    pam = PathAttention(channels=8, num_candidates=3)
    zs = _candidates(3)
    out, w = pam(zs)
    expected = sum(w[:, k, None, None, None] * zs[k] for k in range(3))
    assert torch.allclose(out, expected, atol=1e-6)


def test_beta_and_mlp_get_gradients() -> None:
    pam = PathAttention(channels=8, num_candidates=3)
    out, _ = pam(_candidates(3))
    out.square().mean().backward()
    assert pam.beta.grad is not None and pam.beta.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pam.parameters())


def test_beta_shifts_the_weights() -> None:
    pam = PathAttention(channels=8, num_candidates=3)
    zs = _candidates(3)
    _, before = pam(zs)
    with torch.no_grad():
        pam.beta[1] += 3.0
    _, after = pam(zs)
    assert (after[:, 1] > before[:, 1]).all()


@pytest.mark.parametrize("signal", [0, 3])
def test_the_candidate_carrying_the_signal_is_ranked_first_by_score_and_by_perturbation(signal: int) -> None:
    torch.manual_seed(1)
    k, c = 5, 8
    pam = PathAttention(channels=c, num_candidates=k, hidden=16)
    opt = torch.optim.Adam(pam.parameters(), lr=0.05)
    for step in range(80):
        g = torch.Generator().manual_seed(100 + step)
        target = torch.randn(8, c, 4, 4, generator=g)
        # only `signal` is the target; the others are independent noise of the same scale
        zs = [target if i == signal else torch.randn(8, c, 4, 4, generator=g) for i in range(k)]
        out, _ = pam(zs)
        loss = torch.nn.functional.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(999)
    target = torch.randn(32, c, 4, 4, generator=g)
    zs = [target if i == signal else torch.randn(32, c, 4, 4, generator=g) for i in range(k)]
    with torch.no_grad():
        out, w = pam(zs)
        # perturbation (macro.select=perturb): the harm of removing each candidate
        intact = torch.nn.functional.mse_loss(out, target)
        harm = [float(torch.nn.functional.mse_loss(pam(zs, drop=i)[0], target) - intact) for i in range(k)]
    score = w.mean(0)
    assert int(score.argmax()) == signal
    assert score[signal] > 0.5
    assert max(range(k), key=lambda i: harm[i]) == signal and harm[signal] > 0
    assert sorted(harm)[-2] < 0  # removing a noise path helps: it renormalises weight onto the signal
