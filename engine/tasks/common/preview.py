"""The fixed preview view progress events show, and a PNG of a colour field on a mesh seen from it."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...images import png_bytes
from ...render.cameras import Cameras, orbit_from_angles
from ...render.surface import hit_surface, shade_field

PREVIEW_VIEW = dict(elevation=20.0, azimuth=35.0, distance=1.8, fov=45.0)


def preview_cameras(size: int, device: torch.device | str = "cpu") -> Cameras:
    """One square camera at PREVIEW_VIEW (front-right, slightly above), `size` pixels.

    Args:
        size: width = height.
        device: where the cameras live.
    """
    v = PREVIEW_VIEW
    return orbit_from_angles(
        torch.tensor([v["elevation"]]),
        torch.tensor([v["azimuth"]]),
        torch.tensor([v["distance"]]),
        torch.tensor([v["fov"]]),
        size,
        size,
    ).to(device)


def field_preview_png(
    field: Callable[[torch.Tensor], torch.Tensor], verts: torch.Tensor, faces: torch.Tensor, size: int
) -> bytes:
    """PNG of `field(points (N, 3)) -> rgb (N, 3)` on the mesh `verts (V, 3)`, `faces (F, 3)` over white.

    Args:
        field: colour field in the mesh's (normalised) frame.
        verts, faces: normalised mesh on the field's device.
        size: preview width = height.
    """
    cams = preview_cameras(size, verts.device)
    with torch.no_grad():
        img = shade_field(field, hit_surface(cams, verts, faces), torch.ones(1, 3, device=verts.device))
    return png_bytes(img[0].float().cpu().numpy())
