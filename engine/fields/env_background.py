"""Learned environment-map background (on the ray direction) with the official random solid-colour
augmentation.

threestudio's `neural-environment-map-background` (csd_reference.md §2a): colour = sigmoid(MLP(frequency
encoding of the unit direction)); with `random_aug` (p = 0.5 in the CSD runs) a training batch element's
background is replaced by one random solid colour, so the object cannot hide in the background.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .mlp import MLP


class EnvironmentBackground(nn.Module):
    """RGB as a function of ray direction.

    Args:
        n_frequencies: sin/cos frequencies per direction component (threestudio: 4 with ProgressiveBand).
        hidden_dim, n_hidden_layers: MLP sizes.
        random_aug_prob: probability that a batch element's background is a random solid colour in training.
        colour_range: (lo, hi) the colours are squeezed into (official (0, 1); the toy prior, trained on light
            backgrounds only, uses (0.55, 1)) — learned and random colours alike.

    `forward(dirs (B, H, W, 3), generator=None) -> (B, H, W, 3)` in [0, 1]; with a generator (training) the
    augmentation applies.
    """

    def __init__(self, n_frequencies: int = 4, hidden_dim: int = 32, n_hidden_layers: int = 1,
                 random_aug_prob: float = 0.5, colour_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.n_frequencies, self.random_aug_prob = n_frequencies, random_aug_prob
        self.lo, self.hi = colour_range
        self.mlp = MLP(3 + 6 * n_frequencies, 3, hidden_dim, n_hidden_layers, bias=False)

    def encode(self, dirs: Tensor) -> Tensor:
        """(..., 3 + 6F) direction and its sin/cos at frequencies 2^k π."""
        freqs = (2.0 ** torch.arange(self.n_frequencies, device=dirs.device, dtype=dirs.dtype)) * math.pi
        ang = dirs[..., None] * freqs  # (..., 3, F)
        return torch.cat([dirs, torch.sin(ang).flatten(-2), torch.cos(ang).flatten(-2)], dim=-1)

    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Args: dirs (B, H, W, 3) unit ray directions; generator: CPU generator enabling the augmentation."""
        shape = dirs.shape
        colour = torch.sigmoid(self.mlp(self.encode(dirs.reshape(-1, 3)))).reshape(shape)
        colour = self.lo + (self.hi - self.lo) * colour
        if generator is not None and self.random_aug_prob > 0:
            b = shape[0]
            swap = (torch.rand(b, generator=generator) < self.random_aug_prob).to(dirs.device)
            solid = (self.lo + (self.hi - self.lo) * torch.rand(b, 3, generator=generator)).to(dirs.device)
            colour = torch.where(swap[:, None, None, None], solid[:, None, None, :].expand(shape), colour)
        return colour
