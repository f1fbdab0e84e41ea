"""Pure-PyTorch triangle rasterizer with nvdiffrast semantics (visibility under no_grad, differentiable u, v).

Algorithm (reference/render_perf.md §3.1):
  1. clip -> screen coordinates, where pixel (row i, column j) has its centre at screen (x=j, y=i), i.e.
     NDC x = 2(j + 0.5)/W - 1 and NDC y = 2(i + 0.5)/H - 1 (nvdiffrast's convention, no y flip here);
  2. per-triangle screen bounding boxes clipped to the image give a candidate count per triangle;
  3. candidate (pixel, triangle) pairs are generated in chunks of about `chunk_pairs` with
     `repeat_interleave` + `cumsum` (no Python loop over triangles or pixels);
  4. edge functions at pixel centres (inclusive, so shared edges never leave cracks) and the
     z/w range test select fragments;
  5. one `scatter_reduce(amin)` on an int64 key = (order-preserving depth bits << 32) | triangle id keeps the
     nearest fragment per pixel and breaks depth ties by the smallest triangle id;
  6. perspective-correct barycentrics of the winning triangle are recomputed differentiably from `pos`.

Watertightness: each edge's coefficients are computed from its two vertices in a canonical order (smaller
vertex index first) and negated when the triangle traverses it the other way, so two triangles sharing an
edge evaluate bit-identical (up to sign) edge functions and a pixel centre on the edge belongs to both
(the depth/id tie-break then picks one).

Triangles with any vertex at w <= 0 (touching or behind the camera plane) are dropped entirely; nvdiffrast
clips them against the near plane instead, so the two differ only for triangles crossing the camera plane.
"""
from __future__ import annotations

import torch
from torch import Tensor

_EMPTY_KEY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


def _ordered_depth_bits(z: Tensor) -> Tensor:
    """float32 -> int64 whose signed order equals the float order (sign-magnitude to two's complement).

    Args:
        z: (N,) float32 depths (finite).
    Returns:
        (N,) int64 in [-2^31, 2^31).
    """
    bits = z.contiguous().view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return bits.to(torch.int64)


def _triangle_setup(pos: Tensor, tri: Tensor, height: int, width: int):
    """Per-(batch, triangle) screen-space setup for every triangle that can cover a pixel centre.

    Args:
        pos: (B, V, 4) clip-space positions (detached).
        tri: (F, 3) int64 vertex indices.
        height, width: image size.
    Returns:
        dict with, per kept triangle T: `tid` (T,) flat index b*F + f, `x0`, `y0` (T,) int64 bbox corner,
        `bw`, `count` (T,) int64 bbox width and area, `coef` (T, 3, 3) float edge coefficients (A, B, C) with
        E = A*x + B*y + C >= 0 inside, `zplane` (T, 3) z/w plane (Az, Bz, Zref) relative to the bbox corner.
    """
    bsz, nv, _ = pos.shape
    nf = tri.shape[0]
    work = torch.float64 if pos.dtype == torch.float64 else torch.float32
    p = pos.to(work)
    w = p[..., 3]
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    sx = (p[..., 0] / safe_w + 1.0) * (0.5 * width) - 0.5          # (B, V) column coordinate
    sy = (p[..., 1] / safe_w + 1.0) * (0.5 * height) - 0.5         # (B, V) row coordinate
    sz = p[..., 2] / safe_w

    tx = sx[:, tri]                                                  # (B, F, 3)
    ty = sy[:, tri]
    tz = sz[:, tri]
    tw = w[:, tri]

    # Edge k is opposite vertex k: edges (1,2), (2,0), (0,1).  Canonical orientation by vertex index.
    ia = tri[:, [1, 2, 0]]
    ib = tri[:, [2, 0, 1]]
    swap = ia > ib                                                   # (F, 3)
    xa = tx[..., [1, 2, 0]]
    ya = ty[..., [1, 2, 0]]
    xb = tx[..., [2, 0, 1]]
    yb = ty[..., [2, 0, 1]]
    xa_c = torch.where(swap, xb, xa)
    ya_c = torch.where(swap, yb, ya)
    xb_c = torch.where(swap, xa, xb)
    yb_c = torch.where(swap, ya, yb)
    # E(p) = (xb - xa) * (py - ya) - (yb - ya) * (px - xa) = A px + B py + C
    A = -(yb_c - ya_c)
    B = xb_c - xa_c
    C = (yb_c - ya_c) * xa_c - (xb_c - xa_c) * ya_c
    sign = torch.where(swap, -1.0, 1.0).to(work)
    A, B, C = A * sign, B * sign, C * sign
    # Twice the signed area (as the sum of the edge functions, which is constant over the plane).
    area2 = (tx[..., 1] - tx[..., 0]) * (ty[..., 2] - ty[..., 0]) - (tx[..., 2] - tx[..., 0]) * (ty[..., 1] - ty[..., 0])
    orient = torch.sign(area2)                                        # no back-face culling: flip to inside >= 0
    A, B, C = A * orient[..., None], B * orient[..., None], C * orient[..., None]

    x_lo = torch.ceil(tx.amin(-1)).clamp(min=0)
    x_hi = torch.floor(tx.amax(-1)).clamp(max=width - 1)
    y_lo = torch.ceil(ty.amin(-1)).clamp(min=0)
    y_hi = torch.floor(ty.amax(-1)).clamp(max=height - 1)
    ok = (
        (tw > 0).all(-1)
        & (area2 != 0)
        & torch.isfinite(area2)
        & (x_hi >= x_lo)
        & (y_hi >= y_lo)
        & (tz.amin(-1) <= 1)
        & (tz.amax(-1) >= -1)
    )
    sel = ok.reshape(-1).nonzero().squeeze(1)
    x_lo = x_lo.reshape(-1)[sel].to(torch.int64)
    y_lo = y_lo.reshape(-1)[sel].to(torch.int64)
    bw = x_hi.reshape(-1)[sel].to(torch.int64) - x_lo + 1
    bh = y_hi.reshape(-1)[sel].to(torch.int64) - y_lo + 1

    A = A.reshape(-1, 3)[sel]
    B = B.reshape(-1, 3)[sel]
    C = C.reshape(-1, 3)[sel]
    tz = tz.reshape(-1, 3)[sel]
    a2 = (area2.abs()).reshape(-1)[sel]
    # z/w is affine in screen space: z = sum_k E_k z_k / sum_k E_k, with sum_k E_k = |area2|.
    az = (A * tz).sum(-1) / a2
    bz = (B * tz).sum(-1) / a2
    xf = x_lo.to(work)
    yf = y_lo.to(work)
    zref = ((A * xf[:, None] + B * yf[:, None] + C) * tz).sum(-1) / a2
    coef = torch.stack([A, B, C], dim=1).to(torch.float32)            # (T, 3 [A,B,C], 3 edges)
    if work == torch.float64:
        coef = coef.to(torch.float64)
    return {
        "tid": sel,
        "x0": x_lo,
        "y0": y_lo,
        "bw": bw,
        "count": bw * bh,
        "coef": coef,
        "zplane": torch.stack([az, bz, zref], dim=1),
    }


def _chunk_bounds(count: Tensor, chunk_pairs: int) -> list[int]:
    """Split triangles (in order) into consecutive groups of about `chunk_pairs` candidates.

    Args:
        count: (T,) int64 candidate count per triangle.
        chunk_pairs: target pairs per chunk (a single larger triangle makes its own larger chunk).
    Returns:
        boundaries [0, ..., T].
    """
    if count.numel() == 0:
        return [0]
    start = torch.cumsum(count, 0) - count
    cid = torch.div(start, chunk_pairs, rounding_mode="floor")
    _, sizes = torch.unique_consecutive(cid, return_counts=True)
    return [0] + torch.cumsum(sizes, 0).tolist()


@torch.no_grad()
def visible_triangles(pos: Tensor, tri: Tensor, height: int, width: int, chunk_pairs: int = 1 << 21) -> Tensor:
    """Nearest triangle per pixel (z/w test, ties -> smallest triangle id).

    Args:
        pos: (B, V, 4) clip-space vertex positions.
        tri: (F, 3) int64 vertex indices.
        height, width: output size.
        chunk_pairs: candidate (pixel, triangle) pairs processed at once (bounds memory).
    Returns:
        (B*H*W,) int64 triangle index per pixel (0-based within the batch item), -1 where empty.
    """
    bsz = pos.shape[0]
    nf = tri.shape[0]
    device = pos.device
    npix = height * width
    keys = torch.full((bsz * npix,), _EMPTY_KEY, dtype=torch.int64, device=device)
    if nf == 0:
        return torch.full((bsz * npix,), -1, dtype=torch.int64, device=device)
    setup = _triangle_setup(pos.detach(), tri, height, width)
    count = setup["count"]
    bounds = _chunk_bounds(count, chunk_pairs)
    for c0, c1 in zip(bounds[:-1], bounds[1:]):
        cnt = count[c0:c1]
        total = int(cnt.sum())
        if total == 0:
            continue
        local = torch.repeat_interleave(torch.arange(c1 - c0, device=device), cnt, output_size=total)
        offs = torch.arange(total, device=device) - (torch.cumsum(cnt, 0) - cnt)[local]
        bw = setup["bw"][c0:c1][local]
        dy = torch.div(offs, bw, rounding_mode="floor")
        dx = offs - dy * bw
        px = setup["x0"][c0:c1][local] + dx
        py = setup["y0"][c0:c1][local] + dy
        coef = setup["coef"][c0:c1][local]                            # (N, 3, 3)
        fx = px.to(coef.dtype)[:, None]
        fy = py.to(coef.dtype)[:, None]
        e = coef[:, 0] * fx + coef[:, 1] * fy + coef[:, 2]             # (N, 3)
        inside = (e >= 0).all(1)
        zp = setup["zplane"][c0:c1][local]
        z = zp[:, 2] + zp[:, 0] * dx.to(zp.dtype) + zp[:, 1] * dy.to(zp.dtype)
        inside &= (z >= -1) & (z <= 1)
        idx = inside.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        tid = setup["tid"][c0:c1][local[idx]]
        b = torch.div(tid, nf, rounding_mode="floor")
        f = tid - b * nf
        pix = b * npix + py[idx] * width + px[idx]
        key = (_ordered_depth_bits(z[idx].to(torch.float32)) << 32) | f
        keys.scatter_reduce_(0, pix, key, reduce="amin")
    face = keys & _LOW32
    return torch.where(keys == _EMPTY_KEY, torch.full_like(face, -1), face)


def rasterize_torch(pos: Tensor, tri: Tensor, height: int, width: int, chunk_pairs: int = 1 << 21) -> Tensor:
    """Rasterize clip-space triangles; see module docstring for the conventions.

    Args:
        pos: (B, V, 4) clip-space vertex positions (float32 or float64; may require grad).
        tri: (F, 3) integer vertex indices.
        height, width: output size.
        chunk_pairs: candidate pairs per chunk.
    Returns:
        (B, H, W, 4) in pos.dtype: (u, v, z/w, triangle_id + 1), zeros where empty; u, v carry gradients to pos.
    """
    tri = tri.to(device=pos.device, dtype=torch.int64)
    bsz = pos.shape[0]
    npix = height * width
    face = visible_triangles(pos, tri, height, width, chunk_pairs)
    covered = (face >= 0).nonzero().squeeze(1)
    out = torch.zeros(bsz * npix, 4, dtype=pos.dtype, device=pos.device)
    if covered.numel() == 0:
        return out.view(bsz, height, width, 4)
    f = face[covered]
    b = torch.div(covered, npix, rounding_mode="floor")
    rem = covered - b * npix
    row = torch.div(rem, width, rounding_mode="floor")
    col = rem - row * width
    xp = (2.0 * col.to(pos.dtype) + 1.0) / width - 1.0
    yp = (2.0 * row.to(pos.dtype) + 1.0) / height - 1.0
    v = pos[b[:, None], tri[f]]                                          # (K, 3, 4)
    ax = v[..., 0] - xp[:, None] * v[..., 3]
    ay = v[..., 1] - yp[:, None] * v[..., 3]
    # Homogeneous 2D barycentrics: b_k ∝ cross(a_{k+1}, a_{k+2}); they are perspective-correct.
    c0 = ax[:, 1] * ay[:, 2] - ay[:, 1] * ax[:, 2]
    c1 = ax[:, 2] * ay[:, 0] - ay[:, 2] * ax[:, 0]
    c2 = ax[:, 0] * ay[:, 1] - ay[:, 0] * ax[:, 1]
    s = c0 + c1 + c2
    u = c0 / s
    vv = c1 / s
    with torch.no_grad():
        vd = v.detach()
        zw = (c0 * vd[:, 0, 2] + c1 * vd[:, 1, 2] + c2 * vd[:, 2, 2]) / (
            c0 * vd[:, 0, 3] + c1 * vd[:, 1, 3] + c2 * vd[:, 2, 3]
        )
    vals = torch.stack([u, vv, zw.detach(), (f + 1).to(pos.dtype)], dim=1)
    out = out.index_put((covered,), vals)
    return out.view(bsz, height, width, 4)
