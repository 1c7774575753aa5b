"""Path Attention Module (PAM) with the Channel Attention Module (CAM) path score, SPEC §2.5.

The literal paper Eq. 10-11 is a softmax over channels, so every path scores N (see
docs/design.md, "Path scoring"). Implemented instead (non-degenerate reading):

    g_k  = GAP(z_k)                                   channel descriptor of candidate k
    A_ij = <g_i, g_j> / sqrt(C)                       pairwise path affinities
    e_k  = MLP([g_k, sum_j softmax_j(A_kj) g_j])      shared tiny MLP -> scalar
    w    = softmax_k(e_k + beta_k)                    softmax over paths, beta learnable
    out  = sum_k w_k z_k
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


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

    def __init__(self, channels: int, num_candidates: int, hidden: int = 16) -> None:
        super().__init__()
        if num_candidates < 1:
            raise ValueError(f"a node needs at least one candidate input, got {num_candidates}")
        self.num_candidates = num_candidates
        self.cam = ChannelAttentionScore(channels, hidden)
        # architecture logit per candidate path; zeros = no prior preference
        self.beta = nn.Parameter(torch.zeros(num_candidates))

    def path_logits(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pre-softmax path logits e_k + beta_k, [B, K]."""
        if len(zs) != self.num_candidates:
            raise ValueError(f"expected {self.num_candidates} candidates, got {len(zs)}")
        g = torch.stack([z.mean(dim=(-2, -1)) for z in zs], dim=1)  # B, K, C
        return self.cam(g) + self.beta

    def forward(self, zs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """`zs`: K aligned tensors [B, C, H, W] -> (node input [B, C, H, W], path weights [B, K])."""
        w = self.path_logits(zs).softmax(dim=-1)
        # a running sum instead of stack(zs) avoids one extra K x [B, C, H, W] copy
        out = w[:, 0, None, None, None] * zs[0]
        for k in range(1, len(zs)):
            out = out + w[:, k, None, None, None] * zs[k]
        return out, w
