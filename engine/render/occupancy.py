"""An occupancy grid over the field's bound (as nerfacc's OccGridEstimator): empty cells' samples are skipped.

Each cell keeps an exponential moving maximum of the density seen at a random point inside it,
`occ = max(decay · occ, density)`, updated every few steps; a cell is occupied when `occ ≥ min(threshold,
mean(occ))`, so a cell whose density exceeds `threshold` is never culled. Cells are indexed [x, y, z].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class OccupancyGrid:
    """Binary occupancy of `resolution`^3 cells covering [-radius, radius]^3.

    Args:
        resolution: cells per axis.
        radius: half the edge of the covered cube.
        threshold: density at or above which a cell is always occupied.
        decay: per-update decay of the stored density (the moving maximum).
        device: where the grid lives.
    """

    def __init__(self, resolution: int = 32, radius: float = 1.0, threshold: float = 0.01, decay: float = 0.95,
                 device: torch.device | str = "cpu"):
        if resolution < 1:
            raise ValueError(f"resolution: must be >= 1, got {resolution}")
        self.resolution, self.radius, self.threshold, self.decay = resolution, radius, threshold, decay
        self.density = torch.full(
            (resolution,) * 3, float("inf"), device=device
        )  # everything occupied at first
        self.binary = torch.ones((resolution,) * 3, dtype=torch.bool, device=device)
        self.updates = 0

    def cell_centres(self) -> Tensor:
        """(R, R, R, 3) world positions of the cell centres."""
        r = self.resolution
        c = (
            torch.arange(r, dtype=torch.float32, device=self.density.device) + 0.5
        ) / r * 2 * self.radius - self.radius
        return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[Tensor], Tensor],
        generator: torch.Generator | None = None,
        chunk: int = 65536,
    ) -> None:
        """Evaluate `density_fn(points (N, 3)) -> (N,)` at one point per cell and refresh the occupancy.

        The first update evaluates the cell centres; later ones a uniformly random point in each cell (from
        `generator`, a CPU generator).

        Args:
            density_fn: the field's density (no gradient needed).
            generator: CPU generator for the jitter.
            chunk: points per density call.
        """
        r, cell = self.resolution, 2 * self.radius / self.resolution
        pts = self.cell_centres().reshape(-1, 3)
        if self.updates > 0:
            pts = pts + (torch.rand(pts.shape, generator=generator) - 0.5).to(pts.device) * cell
        new = torch.cat(
            [density_fn(pts[i : i + chunk]).float().reshape(-1) for i in range(0, len(pts), chunk)]
        )
        new = new.reshape(r, r, r)
        old = torch.where(torch.isinf(self.density), torch.zeros_like(new), self.density)
        self.density = torch.maximum(old * self.decay, new)
        self.binary = self.density >= min(self.threshold, float(self.density.mean()))
        self.updates += 1

    def query(self, points: Tensor) -> Tensor:
        """(...,) bool: True where `points (..., 3)` fall in an occupied cell (False outside the cube)."""
        r = self.resolution
        idx = torch.floor((points + self.radius) / (2 * self.radius) * r).long()
        inside = ((idx >= 0) & (idx < r)).all(-1)
        idx = idx.clamp(0, r - 1)
        return inside & self.binary[idx[..., 0], idx[..., 1], idx[..., 2]]

    def occupied_fraction(self) -> float:
        """Share of cells currently occupied."""
        return float(self.binary.float().mean())
