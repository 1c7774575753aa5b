"""Path Attention Module (PAM) with the Channel Attention Module (CAM) path score, SPEC §2.5.

The literal paper Eq. 10-11 is a softmax over channels, so every path scores N (see
docs/design.md, "Path scoring"). Implemented instead (non-degenerate reading):

    g_k  = [GAP(relu(z_k)), std_hw(z_k)]              descriptor of candidate k (2C values)
    A_ij = <g_i, g_j> / sqrt(2C)                      pairwise path affinities
    e_k  = MLP([g_k, sum_j softmax_j(A_kj) g_j])      shared tiny MLP -> scalar
    w    = softmax_k(e_k + beta_k)                    softmax over paths, beta learnable
    out  = sum_k w_k z_k

z_k leaves the alignment's BatchNorm(affine=False), so GAP(z_k) has batch mean exactly 0 in
train mode (0 at batch 1); GAP(relu) and the spatial std are not zeroed by BN and match
between train and eval mode (SPEC §2.5). `use_cam=False` (`macro.scoring=beta`) drops the
CAM term: w = softmax(beta), the ablation without content-based scoring.

`forward(zs, drop=k)` removes candidate k (its logit becomes -inf, so the remaining weights are
renormalised): the perturbation of `macro.select=perturb` (lit/macro_perturb.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def path_descriptor(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[B, C, H, W] -> [B, 2C]: GAP(relu(z)) and the per-channel spatial std of z."""
    flat = z.flatten(-2)
    pooled = flat.relu().mean(-1)
    # sqrt(var + eps): finite gradient also where a channel is spatially constant
    std = (flat.var(-1, correction=0) + eps).sqrt()
    return torch.cat([pooled, std], dim=-1)


class ChannelAttentionScore(nn.Module):
    """CAM: a scalar score e_k per candidate from its descriptor and its affinity context."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.channels = channels
        # one MLP shared by all candidates of the node, so the score depends on content, not slot
        self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        """`g`: descriptors [B, K, C] -> scores e [B, K]."""
        affinity = g @ g.transpose(1, 2) / math.sqrt(self.channels)  # B, K, K
        context = affinity.softmax(dim=-1) @ g  # B, K, C
        return self.mlp(torch.cat([g, context], dim=-1)).squeeze(-1)


class PathAttention(nn.Module):
    """PAM for one node: weighs `num_candidates` aligned inputs; returns (sum_k w_k z_k, w)."""

    def __init__(self, channels: int, num_candidates: int, hidden: int = 16, use_cam: bool = True) -> None:
        super().__init__()
        if num_candidates < 1:
            raise ValueError(f"a node needs at least one candidate input, got {num_candidates}")
        self.num_candidates = num_candidates
        # the CAM sees the 2C-wide descriptor of path_descriptor
        self.cam = ChannelAttentionScore(2 * channels, hidden) if use_cam else None
        # architecture logit per candidate path; zeros = no prior preference
        self.beta = nn.Parameter(torch.zeros(num_candidates))

    def path_logits(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pre-softmax path logits e_k + beta_k, [B, K]."""
        if len(zs) != self.num_candidates:
            raise ValueError(f"expected {self.num_candidates} candidates, got {len(zs)}")
        if self.cam is None:  # beta-only scoring: the same prior for every sample
            return self.beta.expand(zs[0].shape[0], -1)
        g = torch.stack([path_descriptor(z) for z in zs], dim=1)  # B, K, 2C
        return self.cam(g) + self.beta

    def forward(self, zs: Sequence[torch.Tensor], drop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`zs`: K aligned tensors [B, C, H, W] -> (node input [B, C, H, W], path weights [B, K]).

        `drop=k` removes candidate k: w = softmax over the other candidates (w_k = 0).
        """
        logits = self.path_logits(zs)
        if drop is not None:
            if not 0 <= drop < self.num_candidates or self.num_candidates < 2:
                raise ValueError(f"cannot drop candidate {drop} of a node with {self.num_candidates} candidate(s)")
            removed = torch.arange(self.num_candidates, device=logits.device) == drop
            logits = logits.masked_fill(removed, float("-inf"))
        w = logits.softmax(dim=-1)
        # a running sum instead of stack(zs) avoids one extra K x [B, C, H, W] copy
        out = w[:, 0, None, None, None] * zs[0]
        for k in range(1, len(zs)):
            out = out + w[:, k, None, None, None] * zs[k]
        return out, w
