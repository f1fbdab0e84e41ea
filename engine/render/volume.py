"""Plain-torch volume rendering: stratified samples in the bound, occupancy culling, cumprod transmittance.

For each ray, `n_samples` points are spread over [near, far] of its intersection with [-radius, radius]^3
(stratified with a random offset in training, interval midpoints otherwise). Samples that fall in empty
occupancy-grid cells are never given to the field (their density is 0), so the field's cost follows the
occupied space. Weights w_i = α_i T_i with α_i = 1 − exp(−σ_i δ_i) and T_i = Π_{j<i} (1 − α_j).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .occupancy import OccupancyGrid
from .rays import ray_box

FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]  # points (N, 3) -> density (N,), albedo (N, C)
NormalFn = Callable[[Tensor, Tensor], Tensor]  # points (N, 3), density there (N,) -> unit normals (N, 3)


@dataclass
class VolumeOutput:
    """What `render_rays` returns for R rays (reshape to images with the camera's (B, H, W)).

    Attributes:
        colour: (R, C) composited albedo (no background).
        opacity: (R,) accumulated weight Σ w_i.
        depth: (R,) expected distance Σ w_i t_i.
        normal: (R, 3) composited world-space normals, or None when no normal function was given.
        orient: scalar orientation loss Σ w̄_i max(0, n_i·d)² / #rays with opacity (w̄ = detached), 0 without
            normals.
        samples: samples per ray before culling (rays that hit the bound).
        kept: samples per ray after occupancy culling (rays that hit the bound).
    """

    colour: Tensor
    opacity: Tensor
    depth: Tensor
    normal: Tensor | None
    orient: Tensor
    samples: float
    kept: float


def render_rays(
    field: FieldFn,
    origins: Tensor,
    dirs: Tensor,
    radius: float,
    n_samples: int,
    occupancy: OccupancyGrid | None = None,
    normal_fn: NormalFn | None = None,
    generator: torch.Generator | None = None,
    normal_weight_min: float = 1e-2,
) -> VolumeOutput:
    """Volume-render R rays through `field` inside [-radius, radius]^3.

    Args:
        field: density and albedo at points.
        origins, dirs: (R, 3) ray origins and unit directions.
        radius: half the edge of the bound.
        n_samples: samples per ray over the ray's part inside the bound.
        occupancy: samples in unoccupied cells are skipped (None: none skipped).
        normal_fn: normals at samples whose (detached) weight exceeds `normal_weight_min` (the others add
            almost nothing to the image or the orientation loss), given the samples and their density (with
            its graph); None skips normals and the orientation loss.
        generator: generator for stratified offsets (on the rays' device avoids a host copy); None uses
            interval midpoints (deterministic).
        normal_weight_min: weight below which a sample's normal is not evaluated.
    """
    r_count, dev = origins.shape[0], origins.device
    near, far, hit = ray_box(origins, dirs, radius)
    near, far = torch.where(hit, near, torch.zeros_like(near)), torch.where(hit, far, torch.zeros_like(far))
    if generator is None:
        u = torch.full((r_count, n_samples), 0.5, device=dev)
    else:
        u = torch.rand(r_count, n_samples, generator=generator, device=generator.device).to(dev)
    step = (far - near) / n_samples  # (R,)
    t = near[:, None] + (torch.arange(n_samples, device=dev)[None] + u) * step[:, None]  # (R, S)
    points = origins[:, None] + t[..., None] * dirs[:, None]  # (R, S, 3)
    keep = hit[:, None].expand(r_count, n_samples)
    if occupancy is not None:
        keep = keep & occupancy.query(points)
    n_hit = max(int(hit.sum()), 1)
    sigma = torch.zeros(r_count, n_samples, device=dev)
    kept_pts = points[keep]
    if kept_pts.shape[0] > 0:
        s, c = field(kept_pts)
        idx = keep.nonzero(as_tuple=True)
        sigma = sigma.index_put(idx, s.float().reshape(-1))
        albedo = torch.zeros(r_count, n_samples, c.shape[-1], device=dev, dtype=c.dtype).index_put(idx, c)
    else:
        albedo = torch.zeros(r_count, n_samples, 3, device=dev)
    alpha = 1.0 - torch.exp(-sigma * step[:, None])
    trans = torch.cumprod(torch.cat([torch.ones(r_count, 1, device=dev), 1.0 - alpha + 1e-10], dim=1), dim=1)[
        :, :-1
    ]
    weights = alpha * trans  # (R, S)
    colour = (weights[..., None] * albedo).sum(1)
    opacity = weights.sum(1)
    depth = (weights * t).sum(1)
    normal, orient = None, torch.zeros((), device=dev)
    if normal_fn is not None:
        sel = keep & (weights.detach() > normal_weight_min)
        normals = torch.zeros(r_count, n_samples, 3, device=dev)
        if bool(sel.any()):
            idx = sel.nonzero(as_tuple=True)
            n = normal_fn(points[idx], sigma[idx])
            normals = normals.index_put(idx, n)
            facing = (n * dirs[idx[0]]).sum(-1).clamp_min(0.0) ** 2
            orient = (weights.detach()[idx] * facing).sum() / (opacity.detach() > 0).sum().clamp_min(1)
        normal = (weights[..., None] * normals).sum(1)
    return VolumeOutput(
        colour=colour,
        opacity=opacity,
        depth=depth,
        normal=normal,
        orient=orient,
        samples=float(n_samples if bool(hit.any()) else 0),
        kept=float(keep.sum()) / n_hit,
    )
