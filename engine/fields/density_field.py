"""The coarse stage's NeRF: density + albedo on a hash grid, softplus density with Magic3D's blob bias.

threestudio's `implicit-volume` (csd_reference.md §2a): points in [-radius, radius]^3 are mapped to [0, 1]^3
for the hash grid; a small MLP gives one density logit and albedo features; density = softplus(logit + b(x))
with `blob_magic3d` b(x) = blob_scale · (1 − |x| / blob_std), albedo = sigmoid(features). Normals are the
negative normalised density gradient by finite differences (the official config's analytic normals would need
a twice differentiable hash grid; the torch one is not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hashgrid import HashGrid
from .mlp import MLP


@dataclass
class DensityFieldConfig:
    """Sizes and the official constants.

    Args:
        radius: half the edge of the bound (csd-if: 1.0).
        n_levels, n_features_per_level, log2_hashmap_size, base_resolution, per_level_scale: hash grid
            (csd-if: 12, 2, 19, 16, 1.3703509847201236).
        hidden_dim, n_hidden_layers: MLP.
        blob_scale, blob_std: `blob_magic3d` density bias (10, 0.5).
        normal_eps: finite-difference step, in world units.
        backend: hash-grid backend.
    """

    radius: float = 1.0
    n_levels: int = 12
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 1.3703509847201236
    hidden_dim: int = 64
    n_hidden_layers: int = 1
    blob_scale: float = 10.0
    blob_std: float = 0.5
    normal_eps: float = 0.01
    backend: str = "auto"


class DensityField(nn.Module):
    """Density and albedo over [-radius, radius]^3.

    Args:
        config: DensityFieldConfig.

    `forward(points (N, 3)) -> (density (N,) ≥ 0, albedo (N, 3) in [0, 1])`.
    """

    def __init__(self, config: DensityFieldConfig | None = None):
        super().__init__()
        self.config = c = config or DensityFieldConfig()
        self.encoding = HashGrid(
            3,
            c.n_levels,
            c.n_features_per_level,
            c.log2_hashmap_size,
            c.base_resolution,
            c.per_level_scale,
            backend=c.backend,
        )
        self.mlp = MLP(self.encoding.n_output_dims, 4, c.hidden_dim, c.n_hidden_layers, bias=False)

    def _raw(self, points: Tensor) -> Tensor:
        x = (points.float() / (2 * self.config.radius) + 0.5).clamp(0.0, 1.0)
        return self.mlp(self.encoding(x)).float()

    def blob(self, points: Tensor) -> Tensor:
        """(N,) Magic3D's density bias at `points (N, 3)`."""
        c = self.config
        return c.blob_scale * (1.0 - points.float().norm(dim=-1) / c.blob_std)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Args: points (N, 3) world positions. Returns density (N,) and albedo (N, 3)."""
        raw = self._raw(points)
        return F.softplus(raw[:, 0] + self.blob(points)), torch.sigmoid(raw[:, 1:])

    def density(self, points: Tensor) -> Tensor:
        """(N,) density at `points (N, 3)`."""
        return self.forward(points)[0]

    def albedo(self, points: Tensor) -> Tensor:
        """(N, 3) albedo at `points (N, 3)` (the texture stage's colour field)."""
        return self.forward(points)[1]

    def normal(self, points: Tensor, density: Tensor | None = None) -> Tensor:
        """(N, 3) unit normals −∇σ/|∇σ| by finite differences (differentiable w.r.t. the field).

        Args:
            points: (N, 3) world positions.
            density: (N,) σ at `points` when already computed (volume rendering has it): forward differences,
                3 more evaluations per point; None: central differences, 6 evaluations.
        """
        eps = self.config.normal_eps
        offsets = torch.eye(3, device=points.device) * eps
        if density is not None:
            d = self.density((points[:, None] + offsets[None]).reshape(-1, 3)).reshape(-1, 3)
            grad = (d - density.reshape(-1, 1)) / eps
        else:
            probe = torch.cat(
                [points[:, None] + offsets[None], points[:, None] - offsets[None]], dim=1
            )  # (N, 6, 3)
            d = self.density(probe.reshape(-1, 3)).reshape(-1, 6)
            grad = (d[:, :3] - d[:, 3:]) / (2 * eps)
        return F.normalize(-grad, dim=-1, eps=1e-8)
