"""Rendering a fixed mesh for the tasks: surface points, a 3D field or a UV texture shaded over a background,
and the depth / normal images ControlNets consume. Images come out (B, H, W, C), top row first.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Cameras
from .rasterize import interpolate, rasterize, texture


@dataclass
class SurfaceHits:
    """Where a batch of cameras sees the mesh.

    Attributes:
        rast: (B, H, W, 4) rasterizer output (u, v, z/w, triangle id + 1).
        mask: (B, H, W) bool, True where a triangle is visible.
        points: (B, H, W, 3) surface points in the mesh's space (zero where empty).
    """

    rast: Tensor
    mask: Tensor
    points: Tensor


def hit_surface(cams: Cameras, vertices: Tensor, faces: Tensor) -> SurfaceHits:
    """Rasterize `vertices (V, 3)`, `faces (F, 3)` from `cams` and interpolate surface positions."""
    rast = rasterize(cams.clip_positions(vertices), faces, (cams.height, cams.width))
    points = interpolate(vertices, rast, faces)
    return SurfaceHits(rast=rast, mask=rast[..., 3] > 0, points=points)


def shade_field(field: Callable[[Tensor], Tensor], hits: SurfaceHits, background: Tensor) -> Tensor:
    """Colour visible pixels with `field(points (N, 3)) -> (N, 3)` and the rest with `background (B, 3)`.

    Returns:
        (B, H, W, 3); differentiable w.r.t. the field's parameters. The field is queried only where visible.
    """
    b, h, w = hits.mask.shape
    image = background[:, None, None, :].expand(b, h, w, 3).reshape(b * h * w, 3).clone()
    visible = hits.mask.reshape(-1).nonzero().squeeze(1)  # the render's one device read: how many are seen
    if visible.numel():
        image[visible] = field(hits.points.reshape(-1, 3).index_select(0, visible)).to(image.dtype)
    return image.view(b, h, w, 3)


def corner_mesh(vertices: Tensor, faces: Tensor, uvs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split a mesh with per-corner UVs `(F, 3, 2)` into one vertex per corner.

    Returns:
        positions (3F, 3), faces (F, 3) = arange, uvs (3F, 2): per-vertex attributes `interpolate` accepts.
    """
    f = faces.shape[0]
    pos = vertices[faces.long()].reshape(3 * f, 3)
    tri = torch.arange(3 * f, dtype=torch.int32, device=vertices.device).reshape(f, 3)
    return pos, tri, uvs.reshape(3 * f, 2)


def shade_uv_texture(cams: Cameras, vertices: Tensor, faces: Tensor, uvs: Tensor, image: Tensor,
                     background: Tensor) -> Tensor:
    """Render a mesh textured with `image (S, S, C)` (top row first) through per-corner `uvs (F, 3, 2)`.

    Returns:
        (B, H, W, C) bilinearly filtered texture over `background (B, C)`.
    """
    pos, tri, corner_uv = corner_mesh(vertices, faces, uvs)
    rast = rasterize(cams.clip_positions(pos), tri, (cams.height, cams.width))
    uv = interpolate(corner_uv, rast, tri)
    # texture() addresses memory row 0 as v = 0 (nvdiffrast); our images store v = 1 first.
    tex = image.flip(0)[None].expand(len(cams), *image.shape)
    colour = texture(tex.contiguous(), uv.contiguous())
    mask = (rast[..., 3:] > 0).to(colour.dtype)
    return colour * mask + background[:, None, None, :] * (1 - mask)


def depth_and_normal(cams: Cameras, hits: SurfaceHits, face_normals: Tensor) -> tuple[Tensor, Tensor]:
    """ControlNet inputs from one rasterisation.

    Args:
        cams: the cameras of `hits`.
        hits: the rasterisation.
        face_normals: (F, 3) unit face normals in the mesh's space.
    Returns:
        depth (B, H, W, 3): per-image min-max normalised inverse distance (near = 1, far = 0.1, background 0),
        normal (B, H, W, 3): camera-space normals mapped to [0, 1] (background 0.5, 0.5, 1), as the normal
        ControlNets expect (x right, y up, z towards the camera).
    """
    view = cams.view()
    cam_pts = torch.einsum("bij,bhwj->bhwi", view[:, :3, :3], hits.points) + view[:, None, None, :3, 3]
    dist = -cam_pts[..., 2]
    mask = hits.mask
    big = torch.finfo(dist.dtype).max
    lo = torch.where(mask, dist, torch.full_like(dist, big)).flatten(1).amin(1)
    hi = torch.where(mask, dist, torch.full_like(dist, -big)).flatten(1).amax(1)
    scale = (hi - lo).clamp(min=1e-6)
    near_is_one = 1.0 - 0.9 * (dist - lo[:, None, None]) / scale[:, None, None]
    depth = torch.where(mask, near_is_one, torch.zeros_like(dist))[..., None].expand(*dist.shape, 3)
    tri = (hits.rast[..., 3].long() - 1).clamp(min=0)
    n_world = face_normals[tri]
    n_cam = torch.einsum("bij,bhwj->bhwi", view[:, :3, :3], n_world)
    # flip normals that face away from the camera (the mesh may have inconsistent winding)
    facing = (n_cam * cam_pts).sum(-1, keepdim=True) > 0
    n_cam = torch.where(facing, -n_cam, n_cam)
    normal = torch.where(mask[..., None], F.normalize(n_cam, dim=-1) * 0.5 + 0.5,
                         torch.tensor([0.5, 0.5, 1.0], device=n_cam.device))
    return depth, normal
