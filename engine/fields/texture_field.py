"""The texture field: a hash grid + small MLP mapping surface points to RGB (threestudio's texture stage)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .hashgrid import HashGrid
from .mlp import MLP


@dataclass
class TextureFieldConfig:
    """Hash grid + MLP sizes. Defaults suit CPU texture work (12 levels, 2^16 entries, 16 -> 512).

    Args:
        n_levels: hash-grid levels.
        n_features_per_level: features per level.
        log2_hashmap_size: log2 of the largest per-level table.
        base_resolution: coarsest grid resolution.
        max_resolution: finest grid resolution; sets `per_level_scale` unless that is given.
        per_level_scale: growth factor between levels (None = derived from max_resolution).
        hidden_dim: MLP hidden units.
        n_hidden_layers: MLP hidden layers.
        out_dim: output channels (3 = RGB).
        backend: hash-grid backend ("auto", "torch", "tcnn").
    """

    n_levels: int = 12
    n_features_per_level: int = 2
    log2_hashmap_size: int = 16
    base_resolution: int = 16
    max_resolution: int = 512
    per_level_scale: float | None = None
    hidden_dim: int = 64
    n_hidden_layers: int = 1
    out_dim: int = 3
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.n_levels < 1:
            raise ValueError(f"n_levels: must be >= 1, got {self.n_levels}")
        if self.max_resolution < self.base_resolution:
            raise ValueError(f"max_resolution: must be >= base_resolution ({self.base_resolution}), "
                             f"got {self.max_resolution}")

    def resolved_per_level_scale(self) -> float:
        """per_level_scale, or exp(log(max/base) / (L-1)) as threestudio computes it."""
        if self.per_level_scale is not None:
            return float(self.per_level_scale)
        if self.n_levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.n_levels - 1))


class TextureField(nn.Module):
    """RGB field over the normalised unit cube.

    Args:
        config: sizes (TextureFieldConfig; defaults when None).

    `forward(points: (N, 3) in [-0.5, 0.5]^3) -> (N, out_dim)` in [0, 1] (sigmoid).
    """

    def __init__(self, config: TextureFieldConfig | None = None):
        super().__init__()
        self.config = config or TextureFieldConfig()
        c = self.config
        self.encoding = HashGrid(3, c.n_levels, c.n_features_per_level, c.log2_hashmap_size,
                                 c.base_resolution, c.resolved_per_level_scale(), backend=c.backend)
        self.mlp = MLP(self.encoding.n_output_dims, c.out_dim, c.hidden_dim, c.n_hidden_layers)

    def forward(self, points: Tensor) -> Tensor:
        """Args: points: (N, 3) in the normalised cube [-0.5, 0.5]^3 (clamped).

        Returns (N, out_dim) in [0, 1].
        """
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points: expected shape (N, 3), got {tuple(points.shape)}")
        x = (points.float() + 0.5).clamp(0.0, 1.0)
        return torch.sigmoid(self.mlp(self.encoding(x)))
