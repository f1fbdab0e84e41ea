"""Differentiable rasterization API with nvdiffrast semantics: rasterize, interpolate, texture, antialias.

Conventions (exactly nvdiffrast's, docs/INTERFACES.md):
- `pos` is clip space; the visible frustum is |x|, |y|, |z| <= w.
- Output row i <-> NDC y = 2(i + 0.5)/H - 1 and column j <-> NDC x = 2(j + 0.5)/W - 1 (point-sampled at pixel
  centres). `Cameras.projection()` negates y so that images come out top row first.
- `rast[..., :4] = (u, v, z/w, triangle_id + 1)`: the first vertex of a triangle has (u, v) = (1, 0), the
  second (0, 1), the third (0, 0); empty pixels are 0 in all four channels. No back-face culling.
- u, v are perspective-correct and differentiable w.r.t. `pos`; z/w and the triangle id carry no gradient.
- Triangles crossing the camera plane (a vertex at w <= 0) are clipped against the near plane, as nvdiffrast
  does; their u, v stay barycentrics of the original triangle.
- `antialias` blends across silhouette edges analytically (nvdiffrast's rule) in both backends; the torch one
  skips edges with a vertex at w <= 0.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _nvdiffrast
from ._antialias import antialias_torch
from ._torch_raster import rasterize_torch

logger = logging.getLogger(__name__)

_BACKENDS = ("auto", "torch", "nvdiffrast")


def _batched_pos(pos: Tensor) -> Tensor:
    if pos.dim() == 2:
        pos = pos[None]
    if pos.dim() != 3 or pos.shape[-1] != 4:
        raise ValueError(f"pos: expected (B, V, 4) or (V, 4) clip-space positions, got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"pos: expected a floating-point tensor, got {pos.dtype}")
    return pos


def _check_tri(tri: Tensor, num_vertices: int) -> None:
    if tri.dim() != 2 or tri.shape[-1] != 3:
        raise ValueError(f"tri: expected (F, 3) vertex indices, got {tuple(tri.shape)}")
    if tri.is_floating_point():
        raise ValueError(f"tri: expected an integer tensor, got {tri.dtype}")
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= num_vertices):
        raise ValueError(f"tri: indices must lie in [0, {num_vertices}), "
                         f"got [{int(tri.min())}, {int(tri.max())}]")


def rasterize(pos: Tensor, tri: Tensor, resolution: tuple[int, int], backend: str = "auto") -> Tensor:
    """Rasterize triangles given in clip space (nvdiffrast `rasterize` semantics).

    Args:
        pos: (B, V, 4) or (V, 4) clip-space vertex positions (float32/float64, may require grad).
        tri: (F, 3) integer vertex indices shared by the batch.
        resolution: (H, W) output size.
        backend: "torch" (pure PyTorch, any device), "nvdiffrast" (CUDA only, must be importable) or "auto"
            (nvdiffrast when importable and pos is on CUDA, else torch).
    Returns:
        (B, H, W, 4) tensor (u, v, z/w, triangle_id + 1) with zeros at empty pixels; u, v are
        perspective-correct barycentrics of the first two vertices and carry gradients to `pos`.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    height, width = int(resolution[0]), int(resolution[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"resolution: expected positive (H, W), got {tuple(resolution)}")
    pos = _batched_pos(pos)
    _check_tri(tri, pos.shape[1])
    if backend == "nvdiffrast" or (backend == "auto" and _nvdiffrast.available(pos.device)):
        return _nvdiffrast.rasterize_nvdiffrast(pos, tri, height, width)
    return rasterize_torch(pos, tri, height, width)


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """Interpolate per-vertex attributes with the rasterizer's barycentrics (nvdiffrast `interpolate`).

    value = u * a[t0] + v * a[t1] + (1 - u - v) * a[t2] for the pixel's triangle (t0, t1, t2); 0 where empty.
    Differentiable w.r.t. `attr` and, through u and v, w.r.t. the positions that produced `rast`.

    Args:
        attr: (V, C) attributes shared by the batch, or (B, V, C) per batch item.
        rast: (B, H, W, 4) output of `rasterize`.
        tri: (F, 3) integer vertex indices used for rasterization.
    Returns:
        (B, H, W, C) tensor in the promoted dtype of attr and rast.
    """
    if rast.dim() != 4 or rast.shape[-1] != 4:
        raise ValueError(f"rast: expected (B, H, W, 4), got {tuple(rast.shape)}")
    if attr.dim() not in (2, 3):
        raise ValueError(f"attr: expected (V, C) or (B, V, C), got {tuple(attr.shape)}")
    bsz, height, width, _ = rast.shape
    if attr.dim() == 3 and attr.shape[0] not in (1, bsz):
        raise ValueError(f"attr: batch {attr.shape[0]} does not match rast batch {bsz}")
    tri = tri.to(device=rast.device, dtype=torch.int64)
    channels = attr.shape[-1]
    dtype = torch.promote_types(attr.dtype, rast.dtype)
    flat = rast.reshape(-1, 4)
    face = flat[:, 3].detach().round().to(torch.int64) - 1
    covered = (face >= 0).nonzero().squeeze(1)
    out = torch.zeros(flat.shape[0], channels, dtype=dtype, device=rast.device)
    if covered.numel() == 0:
        return out.view(bsz, height, width, channels)
    f = face.index_select(0, covered)
    corners = tri.index_select(0, f)                                      # (K, 3)
    if attr.dim() == 3 and attr.shape[0] == bsz and bsz > 1:
        b = torch.div(covered, height * width, rounding_mode="floor")
        corners = corners + (b * attr.shape[1])[:, None]
        table = attr.reshape(-1, channels)
    else:
        table = attr[0] if attr.dim() == 3 else attr
    a = table.index_select(0, corners.reshape(-1)).view(-1, 3, channels).to(dtype)
    uv = flat.index_select(0, covered)[:, :2].to(dtype)
    u, v = uv[:, 0:1], uv[:, 1:2]
    vals = a[:, 2] + u * (a[:, 0] - a[:, 2]) + v * (a[:, 1] - a[:, 2])
    out = out.index_put((covered,), vals)
    return out.view(bsz, height, width, channels)


_FILTERS = {"auto": "bilinear", "linear": "bilinear", "nearest": "nearest"}
_BOUNDARIES = ("clamp", "zero", "wrap")


def texture(tex: Tensor, uv: Tensor, filter_mode: str = "linear", boundary_mode: str = "clamp") -> Tensor:
    """Sample 2D textures (nvdiffrast `texture` addressing, without mipmaps).

    Texel (row r, column c) of `tex` covers uv in [c/Wt, (c+1)/Wt] x [r/Ht, (r+1)/Ht]: uv (0, 0) is the
    corner of the FIRST MEMORY ROW (nvdiffrast's "bottom-left" in OpenGL terms), u runs along columns, v along
    rows. Textures stored top row first (PNG order, v = 1 at row 0) must be flipped (`tex.flip(1)`) or
    sampled with v' = 1 - v. Implemented with `grid_sample(align_corners=False)` on grid = uv * 2 - 1.

    Args:
        tex: (B, Ht, Wt, C) or (Ht, Wt, C) texture (broadcast over the batch of uv when its batch is 1).
        uv: (B, H, W, 2) texture coordinates.
        filter_mode: "linear" / "auto" (bilinear) or "nearest"; mipmap modes are not supported.
        boundary_mode: "clamp" (edge texels), "zero" (zero outside [0, 1]) or "wrap" (periodic, seamless).
    Returns:
        (B, H, W, C) sampled values, differentiable w.r.t. tex and uv.
    """
    if filter_mode not in _FILTERS:
        raise ValueError(f"filter_mode: expected one of {tuple(_FILTERS)}, got {filter_mode!r}")
    if boundary_mode not in _BOUNDARIES:
        raise ValueError(f"boundary_mode: expected one of {_BOUNDARIES}, got {boundary_mode!r}")
    if tex.dim() == 3:
        tex = tex[None]
    if tex.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"texture: expected tex (B, Ht, Wt, C) and uv (B, H, W, 2), got {tuple(tex.shape)}, "
                         f"{tuple(uv.shape)}")
    bsz = uv.shape[0]
    if tex.shape[0] not in (1, bsz):
        raise ValueError(f"tex: batch {tex.shape[0]} does not match uv batch {bsz}")
    img = tex.permute(0, 3, 1, 2).expand(bsz, -1, -1, -1).to(uv.dtype)   # (B, C, Ht, Wt)
    grid = uv
    if boundary_mode == "wrap":
        # Pad one texel on each side with the opposite edge so bilinear filtering wraps across the seam.
        img = torch.cat([img[..., -1:], img, img[..., :1]], dim=-1)
        img = torch.cat([img[..., -1:, :], img, img[..., :1, :]], dim=-2)
        ht, wt = tex.shape[1], tex.shape[2]
        frac = uv - torch.floor(uv)
        scale = torch.tensor([wt / (wt + 2.0), ht / (ht + 2.0)], dtype=uv.dtype, device=uv.device)
        shift = torch.tensor([1.0 / (wt + 2.0), 1.0 / (ht + 2.0)], dtype=uv.dtype, device=uv.device)
        grid = frac * scale + shift
    padding = "zeros" if boundary_mode == "zero" else "border"
    out = F.grid_sample(img, grid * 2.0 - 1.0, mode=_FILTERS[filter_mode], padding_mode=padding,
                        align_corners=False)
    return out.permute(0, 2, 3, 1)


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, backend: str = "auto",
              topology: Tensor | None = None) -> Tensor:
    """Analytic silhouette anti-aliasing (nvdiffrast `antialias` semantics) with geometry gradients.

    Pixels on either side of a silhouette edge (an edge with one adjacent triangle, a non-manifold edge, or an
    edge between a front- and a back-facing triangle in this view) are blended by how far the edge crosses the
    segment between the two pixel centres, which gives gradients w.r.t. `pos` from occlusion/coverage.
    Interior pixels and edges between two triangles facing the same way are returned unchanged.

    Backends: "nvdiffrast" (or "auto" on CUDA with nvdiffrast importable) calls `nvdiffrast.torch.antialias`;
    otherwise the pure-torch port in `engine.render._antialias` runs (same blend rule, not bit-identical to
    nvdiffrast: see that module).

    What it gives: for each horizontal/vertical pixel pair with different triangle ids whose front triangle
    has a silhouette edge crossing the segment between the two centres at s in [0, 1], one pixel moves
    towards the other by |s - 0.5| (a 1-D box filter across the edge); a pixel can receive such a term from
    each of its four pairs. Gradients reach `color` and, through s, the two vertices of that edge.
    What it does not give: no supersampling or area coverage (corners and edges that do not separate two pixel
    centres are ignored), no blending across interior edges (shared vertices must share an index in `tri`,
    as in nvdiffrast), no gradient for silhouettes that lie between two pixels of the same triangle, and on
    the torch backend triangles with a vertex at w <= 0 get no silhouette blending. Callers composite first
    (`rgb = mask * fg + (1 - mask) * bg`, `mask = rast[..., 3:] > 0`) and then call this, as threestudio does;
    `antialias(mask)` gives a soft, differentiable coverage mask.

    Args:
        color: (B, H, W, C) image to anti-alias.
        rast: (B, H, W, 4) rasterizer output for pos/tri.
        pos: (B, V, 4) or (V, 4) clip-space positions used for `rast`.
        tri: (F, 3) integer indices.
        backend: "auto", "torch" or "nvdiffrast".
        topology: optional `engine.render._antialias.edge_neighbors(tri)` to reuse across calls (torch
            backend; by default memoised per `tri` tensor).
    Returns:
        (B, H, W, C) tensor, differentiable w.r.t. color and pos.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    if color.dim() != 4 or color.shape[:3] != rast.shape[:3]:
        raise ValueError(f"color: expected (B, H, W, C) matching rast {tuple(rast.shape[:3])}, got "
                         f"{tuple(color.shape)}")
    pos = _batched_pos(pos)
    if pos.shape[0] not in (1, color.shape[0]):
        raise ValueError(f"pos: batch {pos.shape[0]} does not match color batch {color.shape[0]}")
    if pos.shape[0] != color.shape[0]:
        pos = pos.expand(color.shape[0], -1, -1)
    if backend == "nvdiffrast" or (backend == "auto" and _nvdiffrast.available(color.device)):
        return _nvdiffrast.antialias_nvdiffrast(color, rast, pos, tri)
    return antialias_torch(color, rast, pos, tri, topology)
