"""Camera rays and their intersection with the axis-aligned bound of a field (volume rendering's inputs)."""

from __future__ import annotations

import torch
from torch import Tensor

from .cameras import Cameras


def camera_rays(cams: Cameras) -> tuple[Tensor, Tensor]:
    """World-space rays through every pixel centre, top row first.

    Args:
        cams: B cameras (Blender convention: look down local −Z, +Y up; pixel y grows downwards).
    Returns:
        origins (B, H, W, 3) and unit directions (B, H, W, 3).
    """
    dev = cams.c2w.device
    ys, xs = torch.meshgrid(
        torch.arange(cams.height, device=dev, dtype=torch.float32),
        torch.arange(cams.width, device=dev, dtype=torch.float32),
        indexing="ij",
    )
    x = (xs[None] - cams.cx[:, None, None]) / cams.fx[:, None, None]
    y = -(ys[None] - cams.cy[:, None, None]) / cams.fy[:, None, None]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (B, H, W, 3)
    dirs = torch.einsum("bij,bhwj->bhwi", cams.c2w[:, :3, :3], d_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cams.c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def ray_box(origins: Tensor, dirs: Tensor, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """Slab intersection of rays with the cube [-radius, radius]^3.

    Args:
        origins, dirs: (..., 3) ray origins and unit directions.
        radius: half the cube's edge.
    Returns:
        near (...), far (...) distances along the ray (near ≥ 0), and hit (...) bool (far > near).
    """
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-radius - origins) / safe
    t1 = (radius - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near
