"""Bake a 3D field into a UV texture: rasterise the UV layout, evaluate the field per texel, pad the seams.

Steps (threestudio's mesh exporter, reference/render_perf.md §4): rasterise per-corner UVs as clip coords
(u*2-1, v*2-1, 0, 1) at size*supersample, interpolate 3D positions per texel, evaluate the field in chunks
under no_grad, average the sub-samples; then pad the seams: the first ring of empty texels around each chart
takes the field at the nearest point of a neighbouring texel's triangle (so bilinear lookups at chart edges
stay exact), further rings are dilated (mean of filled neighbours). Rows are flipped: the result is top row
first (row 0 <-> v = 1), while the rasterizer's row 0 is v ~ 0.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CancelledError
from ..render.rasterize import interpolate, rasterize
from .types import Mesh

logger = logging.getLogger(__name__)
TILE_TEXELS = 1 << 20  # texels rasterised and evaluated at once (a band of 256 rows of a 4096² texture)

Field = Callable[[Tensor], Tensor]

# 8-neighbourhood, in the order candidate triangles are taken from
_NEIGHBOURS = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass
class BakeResult:
    """A baked texture and its masks, all top row first.

    Args:
        image: (size, size, C) float32 texture.
        coverage: (size, size) bool, texels whose centre (or a sub-sample) lies on a triangle.
        filled: (size, size) bool, coverage plus the padded seam rings.
    """

    image: np.ndarray
    coverage: np.ndarray
    filled: np.ndarray


def _field_device(field: Field, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(field, torch.nn.Module):
        for p in field.parameters():
            return p.device
    return torch.device("cpu")


def _stoppable(field: Field, should_stop: Callable[[], bool]) -> Field:
    """`field`, raising CancelledError before a call once `should_stop()` is True."""

    def checked(points: Tensor) -> Tensor:
        if should_stop():
            raise CancelledError()
        return field(points)

    return checked


@torch.no_grad()
def _evaluate(field: Field, points: Tensor, chunk: int) -> Tensor:
    """(N, 3) points -> (N, C) float32, evaluated chunk by chunk."""
    outs = [field(points[i:i + chunk]).float() for i in range(0, points.shape[0], chunk)]
    return torch.cat(outs, 0) if outs else torch.zeros(0, 1, device=points.device)


def _nearest_on_triangle(uv_tri: Tensor, p_tri: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """3D points of texel centres `uv` (K, 2) projected into their triangles (clamped barycentrics).

    Args:
        uv_tri: (K, 3, 2) the triangles' UV corners.
        p_tri: (K, 3, 3) the triangles' 3D corners.
        uv: (K, 2) texel centres.
    Returns:
        (points (K, 3), ok (K,) bool: False for triangles degenerate in UV space).
    """
    a, b, c = uv_tri[:, 0], uv_tri[:, 1], uv_tri[:, 2]
    e0, e1, d = a - c, b - c, uv - c
    det = e0[:, 0] * e1[:, 1] - e0[:, 1] * e1[:, 0]
    ok = det.abs() > 1e-14
    safe = torch.where(ok, det, torch.ones_like(det))
    l0 = (d[:, 0] * e1[:, 1] - d[:, 1] * e1[:, 0]) / safe
    l1 = (e0[:, 0] * d[:, 1] - e0[:, 1] * d[:, 0]) / safe
    bary = torch.stack([l0, l1, 1.0 - l0 - l1], 1).clamp_min(0.0)
    bary = bary / bary.sum(1, keepdim=True).clamp_min(1e-12)
    return (bary[:, :, None] * p_tri).sum(1), ok


def _dilate_once(img: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Fill empty texels that have filled 8-neighbours with the mean of those neighbours.

    Args: img (H, W, C), mask (H, W) bool. Returns the new (img, mask).
    """
    m = mask.to(img.dtype)[None, None]
    x = (img * mask[..., None]).permute(2, 0, 1)[None]
    s = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)[0].permute(1, 2, 0)
    c = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=True)[0, 0]
    new = (~mask) & (c > 0)
    img = torch.where(new[..., None], s / c.clamp_min(1e-12)[..., None], img)
    return img, mask | new


def bake_texture(field: Field, mesh: Mesh, size: int, padding: int = 8, supersample: int = 1,
                 chunk: int = 1 << 16, device: str | torch.device | None = None,
                 raster_backend: str = "auto", should_stop: Callable[[], bool] | None = None) -> BakeResult:
    """Bake `field` over `mesh`'s UV layout.

    Args:
        field: callable (N, 3) points in the mesh's coordinate space -> (N, C) values (e.g. a TextureField
            for a normalised mesh).
        mesh: mesh with per-corner `uvs` (F, 3, 2); see `ensure_uvs`.
        size: texture side in texels.
        padding: rings of empty texels filled around each chart (>= 0; 8 by default).
        supersample: sub-samples per texel side (1 = texel centres only).
        chunk: points per field call.
        device: where to rasterise and evaluate (default: the field's parameters' device, else CPU).
        raster_backend: `engine.render.rasterize` backend.
        should_stop: checked before every field call and padding ring; True raises CancelledError (a 4096²
            bake is 256 chunks and 8 rings, so a cancel lands within a fraction of a second).

    Returns:
        BakeResult with the (size, size, C) float32 image, top row first, and its masks.
    """
    if mesh.uvs is None:
        raise ValueError("mesh.uvs: bake needs per-corner UVs; call ensure_uvs(mesh) first")
    if size < 1:
        raise ValueError(f"size: must be >= 1, got {size}")
    if padding < 0:
        raise ValueError(f"padding: must be >= 0, got {padding}")
    if supersample < 1:
        raise ValueError(f"supersample: must be >= 1, got {supersample}")
    dev = _field_device(field, device)
    if should_stop is not None:
        field = _stoppable(field, should_stop)
    outside = float(np.mean((mesh.uvs < -1e-4) | (mesh.uvs > 1 + 1e-4)))
    if outside > 1e-3:
        logger.warning("bake: %.1f%% of UV coordinates lie outside [0, 1]; those parts are not baked "
                       "(tiled/UDIM layouts are not supported, unwrap instead)", 100 * outside)
    n_faces = mesh.num_faces
    uv = torch.from_numpy(np.ascontiguousarray(mesh.uvs, dtype=np.float32)).to(dev)  # (F, 3, 2)
    corners_p = np.ascontiguousarray(mesh.vertices[mesh.faces], dtype=np.float32)
    p3 = torch.from_numpy(corners_p).to(dev)                                            # (F, 3, 3)
    corners_uv = uv.reshape(-1, 2)
    clip = torch.cat([corners_uv * 2 - 1, torch.zeros_like(corners_uv[:, :1]),
                      torch.ones_like(corners_uv[:, :1])], 1)
    tri = torch.arange(n_faces * 3, device=dev, dtype=torch.int32).view(n_faces, 3)
    hi = size * supersample
    face_id, sub = _raster_tiles(field, clip, tri, p3, hi, supersample, chunk, raster_backend, should_stop)
    covered = face_id >= 0
    n_ch = sub.shape[2]
    # average the sub-samples of each texel
    k = supersample
    counts = covered.view(size, k, size, k).sum((1, 3))                                    # (size, size)
    img = sub.view(size, k, size, k, n_ch).sum((1, 3)) / counts.clamp_min(1)[..., None]
    faces_lo = face_id.view(size, k, size, k).amax((1, 3))                                 # one covering face
    coverage = counts > 0
    filled = coverage.clone()
    if padding >= 1:
        img, filled = _extrapolate_ring(field, img, filled, faces_lo, uv, p3, chunk)
    for _ in range(padding - 1):
        if bool(filled.all()):
            break
        if should_stop is not None and should_stop():
            raise CancelledError()
        img, filled = _dilate_once(img, filled)
    logger.info("baked %dx%d texture: %.1f%% covered, %.1f%% after padding", size, size,
                100.0 * coverage.float().mean().item(), 100.0 * filled.float().mean().item())
    flip = lambda t: torch.flip(t, dims=[0]).cpu().numpy()
    return BakeResult(flip(img).astype(np.float32), flip(coverage), flip(filled))


def _raster_tiles(field: Field, clip: Tensor, tri: Tensor, p3: Tensor, hi: int, k: int, chunk: int,
                  raster_backend: str, should_stop: Callable[[], bool] | None) -> tuple[Tensor, Tensor]:
    """(face id (hi, hi) with -1 for empty, values (hi, hi, C)): the UV layout rasterised and the field evaluated
    in bands of about TILE_TEXELS texels (a band's clip y is stretched onto its rows), so memory stays bounded and
    a cancel lands between bands (a 4096² bake rasterises for tens of seconds on a CPU)."""
    rows = max(k, (TILE_TEXELS // hi) // k * k)
    face_id = torch.full((hi, hi), -1, dtype=torch.long, device=clip.device)
    sub: Tensor | None = None
    for r0 in range(0, hi, rows):
        if should_stop is not None and should_stop():
            raise CancelledError()
        h = min(rows, hi - r0)
        band = clip.clone()
        band[:, 1] = (clip[:, 1] - ((2 * r0 + h) / hi - 1)) * (hi / h)  # rows r0..r0+h onto [-1, 1]
        rast = rasterize(band, tri, (h, hi), backend=raster_backend)        # (1, h, hi, 4)
        fid = rast[0, ..., 3].round().long() - 1
        face_id[r0:r0 + h] = fid
        cov = fid >= 0
        if bool(cov.any()):
            values = _evaluate(field, interpolate(p3.reshape(-1, 3), rast, tri)[0][cov], chunk)
            if sub is None:
                sub = torch.zeros(hi, hi, values.shape[1], device=clip.device)
            sub[r0:r0 + h][cov] = values
    if sub is None:
        logger.warning("bake: no texel centre lies on any UV triangle (UVs outside [0, 1]?)")
        n_ch = _evaluate(field, p3[0, :1], chunk).shape[1]  # learn the channel count
        sub = torch.zeros(hi, hi, n_ch, device=clip.device)
    return face_id, sub


def _extrapolate_ring(field: Field, img: Tensor, filled: Tensor, face_id: Tensor, uv: Tensor, p3: Tensor,
                      chunk: int) -> tuple[Tensor, Tensor]:
    """First padding ring: evaluate the field at the nearest point of a neighbouring texel's triangle."""
    size = img.shape[0]
    cand = torch.full_like(face_id, -1)
    padded = F.pad(face_id[None, None].float(), (1, 1, 1, 1), value=-1.0)[0, 0].long()
    for dy, dx in _NEIGHBOURS:
        nb = padded[1 + dy: 1 + dy + size, 1 + dx: 1 + dx + size]
        take = (cand < 0) & (nb >= 0) & ~filled
        cand = torch.where(take, nb, cand)
    ring = cand >= 0
    if not bool(ring.any()):
        return img, filled
    rows, cols = torch.nonzero(ring, as_tuple=True)
    centre = torch.stack([(cols.float() + 0.5) / size, (rows.float() + 0.5) / size], 1)   # raster rows: v up
    faces = cand[rows, cols]
    points, ok = _nearest_on_triangle(uv[faces], p3[faces], centre)
    vals = _evaluate(field, points[ok], chunk)
    img = img.clone()
    filled = filled.clone()
    img[rows[ok], cols[ok]] = vals
    filled[rows[ok], cols[ok]] = True
    return img, filled


def bake(field: Field, mesh: Mesh, size: int, padding: int = 8, supersample: int = 1, **kwargs) -> np.ndarray:
    """Bake `field` into a (size, size, C) float32 texture, top row first (see `bake_texture`).

    Args:
        field: (N, 3) -> (N, C) callable over the mesh's coordinate space.
        mesh: mesh with per-corner UVs.
        size: texture side in texels.
        padding: seam padding rings (default 8).
        supersample: sub-samples per texel side.
        **kwargs: chunk, device, raster_backend (see `bake_texture`).
    """
    return bake_texture(field, mesh, size, padding, supersample, **kwargs).image
