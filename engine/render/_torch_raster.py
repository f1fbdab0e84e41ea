"""Pure-PyTorch triangle rasterizer with nvdiffrast semantics (visibility under no_grad, differentiable u, v).

Algorithm (reference/render_perf.md §3.1):
  1. clip -> screen coordinates, where pixel (row i, column j) has its centre at screen (x=j, y=i), i.e.
     NDC x = 2(j + 0.5)/W - 1 and NDC y = 2(i + 0.5)/H - 1 (nvdiffrast's convention, no y flip here);
  2. per-triangle screen bounding boxes clipped to the image give a candidate count per triangle;
  3. candidate (pixel, triangle) pairs are generated in chunks of about `chunk_pairs` with
     `repeat_interleave` + `cumsum` (no Python loop over triangles or pixels): every bounding-box pixel for
     small triangles (a one-pixel box is its own single candidate, no expansion), and for triangles at least
     4 px wide only each row's span between its edge crossings (widened by one pixel; crossings are used only
     when their float error is far below that margin);
  4. edge functions at pixel centres (inclusive, so shared edges never leave cracks) and the
     z/w range test select fragments;
  5. one `scatter_reduce(amin)` on an int64 key = (order-preserving depth bits << 32) | triangle id keeps the
     nearest fragment per pixel and breaks depth ties by the smallest triangle id;
  6. perspective-correct barycentrics of the winning triangle are recomputed differentiably from `pos`.

Watertightness: each edge's coefficients are computed from its two vertices in a canonical order (smaller
vertex index first) and negated when the triangle traverses it the other way, so two triangles sharing an
edge evaluate bit-identical (up to sign) edge functions and a pixel centre on the edge belongs to both
(the depth/id tie-break then picks one).

Triangles with a vertex at w <= 0 (touching or behind the camera plane) are clipped against the near plane
z + w >= 0 for the visibility pass (`_near_clipped`), as nvdiffrast clips them; their (u, v) come from the
original vertices like every other triangle's.
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


# Columns of the per-triangle float record.
_A, _B, _C = slice(0, 3), slice(3, 6), slice(6, 9)
_AZ, _BZ, _ZREF, _X0, _Y0 = 9, 10, 11, 12, 13
# Triangles whose bounding box is at least this wide (and this large) are expanded row by row with exact-ish
# spans instead of testing every bounding-box pixel.
_SPAN_MIN_WIDTH = 4
_SPAN_MIN_COUNT = 16


def _triangle_setup(pos: Tensor, tri: Tensor, height: int, width: int) -> dict[str, Tensor]:
    """Per-(batch, triangle) screen-space setup for every triangle that can cover a pixel centre.

    Args:
        pos: (B, V, 4) clip-space positions (detached).
        tri: (F, 3) int64 vertex indices.
        height, width: image size.
    Returns:
        dict with, per kept triangle T: `tid` (T,) int64 flat index b*F + f; `rec` (T, 14) float records
        [A0..2, B0..2, C0..2, Az, Bz, Zref, x0, y0] where edge k (opposite vertex k) is
        E_k = A_k x + B_k y + C_k >= 0 inside and z/w = Zref + Az (x - x0) + Bz (y - y0); `box` (T, 4)
        int32 [x0, y0, bw, bh] clipped bounding box (corner and size in pixels).
    """
    bsz, nv, _ = pos.shape
    nf = tri.shape[0]
    work = torch.float64 if pos.dtype == torch.float64 else torch.float32
    p = pos.to(work)
    w = p[..., 3]
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    sx = ((p[..., 0] / safe_w + 1.0) * (0.5 * width) - 0.5).reshape(-1)   # column (pixel centres at integers)
    sy = ((p[..., 1] / safe_w + 1.0) * (0.5 * height) - 0.5).reshape(-1)  # row
    sz = (p[..., 2] / safe_w).reshape(-1)
    offset = (torch.arange(bsz, device=pos.device) * nv)[:, None, None]
    corner = (tri[None] + offset).reshape(-1)
    tx = sx.index_select(0, corner).view(-1, 3)                        # (B*F, 3)
    ty = sy.index_select(0, corner).view(-1, 3)
    tz = sz.index_select(0, corner).view(-1, 3)
    tw = w.reshape(-1).index_select(0, corner).view(-1, 3)

    x_lo = torch.ceil(tx.amin(1)).clamp_(min=0)
    x_hi = torch.floor(tx.amax(1)).clamp_(max=width - 1)
    y_lo = torch.ceil(ty.amin(1)).clamp_(min=0)
    y_hi = torch.floor(ty.amax(1)).clamp_(max=height - 1)
    area2 = (tx[:, 1] - tx[:, 0]) * (ty[:, 2] - ty[:, 0]) - (tx[:, 2] - tx[:, 0]) * (ty[:, 1] - ty[:, 0])
    ok = (tw.amin(1) > 0) & (x_hi >= x_lo) & (y_hi >= y_lo) & (tz.amin(1) <= 1) & (tz.amax(1) >= -1)
    ok &= (area2 != 0) & torch.isfinite(area2)
    sel = ok.nonzero().squeeze(1)
    # Only the kept triangles get edge records (most of a dense mesh covers no pixel centre at small sizes).
    tz, area2 = tz.index_select(0, sel), area2.index_select(0, sel)
    x_lo, y_lo, x_hi, y_hi = (v.index_select(0, sel) for v in (x_lo, y_lo, x_hi, y_hi))
    face, vert_base = sel % nf, ((sel // nf) * nv)[:, None]

    # Edge k is opposite vertex k: edges (1,2), (2,0), (0,1), evaluated with the vertex of smaller index
    # first, so that triangles sharing an edge compute bit-identical coefficients (up to sign).
    ia = tri.roll(-1, dims=1)
    ib = tri.roll(-2, dims=1)
    swap = ia > ib                                                    # (F, 3)
    ea = (torch.where(swap, ib, ia).index_select(0, face) + vert_base).reshape(-1)
    eb = (torch.where(swap, ia, ib).index_select(0, face) + vert_base).reshape(-1)
    xa = sx.index_select(0, ea).view(-1, 3)
    ya = sy.index_select(0, ea).view(-1, 3)
    xb = sx.index_select(0, eb).view(-1, 3)
    yb = sy.index_select(0, eb).view(-1, 3)
    # E(p) = (xb - xa)(py - ya) - (yb - ya)(px - xa) = A px + B py + C; undo the canonical swap and orient
    # so that inside is >= 0 for both windings (no back-face culling).
    sign = torch.where(swap.index_select(0, face), -1.0, 1.0).to(work) * torch.sign(area2)[:, None]
    A = (ya - yb) * sign
    B = (xb - xa) * sign
    C = ((yb - ya) * xa - (xb - xa) * ya) * sign
    a2 = area2.abs()
    # z/w is affine in screen space: z = sum_k E_k z_k / sum_k E_k with sum_k E_k = |area2|.
    az = (A * tz).sum(1) / a2
    bz = (B * tz).sum(1) / a2
    zref = ((A * x_lo[:, None] + B * y_lo[:, None] + C) * tz).sum(1) / a2
    rec = torch.cat([A, B, C, az[:, None], bz[:, None], zref[:, None], x_lo[:, None], y_lo[:, None]], dim=1)
    box = torch.stack([x_lo, y_lo, x_hi - x_lo + 1, y_hi - y_lo + 1], 1)
    return {"tid": sel, "rec": rec, "box": box.to(torch.int32)}


def _near_clipped(pos: Tensor, tri: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Clip the triangles that have a vertex at w <= 0 against the near plane z + w >= 0 (for visibility only).

    Such triangles cannot be set up in screen space (division by w), so the part in front of the near plane is
    cut into one or two sub-triangles (Sutherland-Hodgman against one plane, vectorised). The winning triangle's
    (u, v) is later recomputed from the ORIGINAL vertices with homogeneous barycentrics, which are valid
    whatever the signs of w, so sub-triangles only decide which triangle is nearest at a pixel.

    Args:
        pos: (B, V, 4) clip-space positions (detached).
        tri: (F, 3) int64 vertex indices.
    Returns:
        cpos (1, 4K, 4) polygon corners, ctri (T, 3) int64 sub-triangles indexing cpos (the two halves of a
        quad share its diagonal's corners, so they meet without cracks), ctid (T,) int64 flat b*F + f source.
    """
    bsz, nv, _ = pos.shape
    if not bool((pos[..., 3] <= 0).any()):                             # the usual case: nothing to clip
        return pos.new_zeros(1, 0, 4), tri.new_zeros(0, 3), tri.new_zeros(0)
    offset = (torch.arange(bsz, device=pos.device) * nv)[:, None, None]
    v = pos.reshape(-1, 4).index_select(0, (tri[None] + offset).reshape(-1)).view(-1, 3, 4)   # (B*F, 3, 4)
    d = v[..., 2] + v[..., 3]
    inside = d >= 0
    src = ((v[..., 3].amin(1) <= 0) & inside.any(1) & torch.isfinite(v).all(2).all(1)).nonzero().squeeze(1)
    if src.numel() == 0:
        return pos.new_zeros(1, 0, 4), tri.new_zeros(0, 3), src
    v, d, inside = v.index_select(0, src), d.index_select(0, src), inside.index_select(0, src)
    nxt = [1, 2, 0]
    vj, dj, inj = v[:, nxt], d[:, nxt], inside[:, nxt]
    t = (d / torch.where(d != dj, d - dj, torch.ones_like(d))).clamp(0, 1)[..., None]
    cut = v + t * (vj - v)                                             # edge k from vertex k to k+1
    # Slots in polygon order: vertex 0, cut 0-1, vertex 1, cut 1-2, vertex 2, cut 2-0.
    slots = torch.stack([v, cut], dim=2).reshape(-1, 6, 4)
    valid = torch.stack([inside, inside != inj], dim=2).reshape(-1, 6)
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, :4]        # valid slots first
    corners = slots.gather(1, order[..., None].expand(-1, -1, 4))                       # (K, 4, 4)
    k = src.numel()
    base = torch.arange(k, device=pos.device)[:, None] * 4
    first = base + torch.tensor([0, 1, 2], device=pos.device)
    second = base + torch.tensor([0, 2, 3], device=pos.device)
    quad = valid.sum(1) == 4
    ctri = torch.cat([first, second[quad]])
    ctid = torch.cat([src, src[quad]])
    return corners.reshape(1, -1, 4), ctri, ctid


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


def _expand(count: Tensor) -> tuple[Tensor, Tensor]:
    """(owner, offset) for every unit of `count`: owner k repeated count[k] times, offset 0..count[k]-1.

    Args:
        count: (T,) non-negative integer counts (their sum must fit in int32).
    Returns:
        owner (N,) int32 and offset (N,) int32 with N = count.sum().
    """
    total = int(count.sum())
    index = torch.arange(count.numel(), device=count.device, dtype=torch.int32)
    owner = torch.repeat_interleave(index, count, output_size=total)
    start = (torch.cumsum(count, 0) - count).to(torch.int32)
    offset = torch.arange(total, device=count.device, dtype=torch.int32) - start.index_select(0, owner)
    return owner, offset


def _box_candidates(box: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every pixel of each bounding box.

    Args:
        box: (T, 4) int32 [x0, y0, bw, bh].
    Returns:
        owner (N,), px (N,), py (N,) int32.
    """
    owner, offs = _expand(box[:, 2].to(torch.int64) * box[:, 3])
    b = box.index_select(0, owner)
    dy = torch.div(offs, b[:, 2], rounding_mode="floor")
    return owner, b[:, 0] + offs - dy * b[:, 2], b[:, 1] + dy


def _span_rows(box: Tensor, rec: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per bounding-box row, the pixel span between the row's edge crossings (widened by one pixel each side).

    A crossing is used only when it is well conditioned (its error bound is far below the one-pixel margin);
    otherwise the row is bounded by the box. The exact edge test runs afterwards, so this only prunes.

    Args:
        box: (T, 4) int32 [x0, y0, bw, bh].
        rec: (T, 14) float records from `_triangle_setup`.
    Returns:
        row owner (R,) int32 triangle index, first column xs (R,) int32, span length n (R,) int64,
        row py (R,) int32.
    """
    owner, dy = _expand(box[:, 3])
    b = box.index_select(0, owner)
    r = rec.index_select(0, owner).to(torch.float64)
    py = b[:, 1] + dy
    a = r[:, _A]
    rest = r[:, _B] * py.to(torch.float64)[:, None] + r[:, _C]       # E = a x + rest on this row
    x1 = (b[:, 0] + b[:, 2] - 1).to(torch.float64)
    # float32 evaluation error of E on this row (a few ulps of its largest term), in units of E
    by = (r[:, _B] * py.to(torch.float64)[:, None]).abs()
    err = 1e-6 * (a.abs() * (x1[:, None] + 1) + by + r[:, _C].abs())
    usable = a.abs() > 4 * err + 1e-12
    root = -rest / torch.where(usable, a, torch.ones_like(a))
    inf = torch.full_like(root, float("inf"))
    lo = torch.where(usable & (a > 0), root, -inf).amax(1)
    hi = torch.where(usable & (a < 0), root, inf).amin(1)
    x0 = b[:, 0].to(torch.float64)
    xs = torch.maximum(torch.ceil(lo) - 1, x0)
    xe = torch.minimum(torch.floor(hi) + 1, x1)
    n = (xe - xs + 1).clamp(min=0).to(torch.int64)
    return owner, xs.to(torch.int32), n, py


def _span_candidates(owner: Tensor, xs: Tensor, n: Tensor, py: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every pixel of each row span.

    Args:
        owner, xs, n, py: (R,) outputs of `_span_rows`.
    Returns:
        owner (N,), px (N,), py (N,) int32.
    """
    row, dx = _expand(n)
    return owner.index_select(0, row), xs.index_select(0, row) + dx, py.index_select(0, row)


def _fragments(rec: Tensor, owner: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Exact inside test (inclusive edge functions at pixel centres) and z/w range test of candidates.

    Args:
        rec: (T, 14) records from `_triangle_setup`; owner, px, py: (N,) candidates (owner indexes rec).
    Returns:
        kept candidate positions (K,) int64 and their z/w (K,) float32.
    """
    r = rec.index_select(0, owner)
    fx = px.to(r.dtype)
    fy = py.to(r.dtype)
    e = torch.addcmul(r[:, _C], r[:, _A], fx[:, None]).addcmul_(r[:, _B], fy[:, None])
    inside = e.amin(1) >= 0
    z = torch.addcmul(r[:, _ZREF], r[:, _AZ], fx - r[:, _X0]).addcmul_(r[:, _BZ], fy - r[:, _Y0])
    inside &= (z >= -1) & (z <= 1)
    keep = inside.nonzero().squeeze(1)
    return keep, z.index_select(0, keep).to(torch.float32)


def _splat(keys: Tensor, rec: Tensor, tid: Tensor, owner: Tensor, px: Tensor, py: Tensor, nf: int, npix: int,
           width: int) -> None:
    """Test candidates and fold the surviving fragments into the per-pixel depth/id keys (in place).

    Args:
        keys: (B*H*W,) int64 running minimum of (depth bits << 32 | triangle id).
        rec: (T, 14) records; tid: (T,) flat b*F + f ids; owner, px, py: (N,) candidates (owner indexes rec).
        nf, npix, width: faces per batch item, pixels per image, image width.
    """
    keep, z = _fragments(rec, owner, px, py)
    if keep.numel() == 0:
        return
    t = tid.index_select(0, owner.index_select(0, keep))
    b = torch.div(t, nf, rounding_mode="floor")
    pix = b * npix + py.index_select(0, keep).to(torch.int64) * width + px.index_select(0, keep)
    keys.scatter_reduce_(0, pix, (_ordered_depth_bits(z) << 32) | (t - b * nf), reduce="amin")


@torch.no_grad()
def visible_triangles(pos: Tensor, tri: Tensor, height: int, width: int,
                      chunk_pairs: int = 1 << 20) -> Tensor:
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
    tid, rec, box = setup["tid"], setup["rec"], setup["box"]
    cpos, ctri, ctid = _near_clipped(pos.detach(), tri)
    if ctri.numel():
        clipped = _triangle_setup(cpos, ctri, height, width)
        tid = torch.cat([tid, ctid.index_select(0, clipped["tid"])])
        rec, box = torch.cat([rec, clipped["rec"]]), torch.cat([box, clipped["box"]])
    count = box[:, 2].to(torch.int64) * box[:, 3]
    # Fast path: a bounding box holding a single pixel centre is its only candidate (no expansion needed).
    single = (count == 1).nonzero().squeeze(1)
    if single.numel():
        s_box = box.index_select(0, single)
        owner = torch.arange(single.numel(), device=device, dtype=torch.int32)
        _splat(keys, rec.index_select(0, single), tid.index_select(0, single), owner, s_box[:, 0], s_box[:, 1],
               nf, npix, width)
    span = (box[:, 2] >= _SPAN_MIN_WIDTH) & (count >= _SPAN_MIN_COUNT)
    for use_span in (False, True):
        group = (span if use_span else (~span & (count > 1))).nonzero().squeeze(1)
        if group.numel() == 0:
            continue
        g_rec, g_box = rec.index_select(0, group), box.index_select(0, group)
        g_tid = tid.index_select(0, group)
        bounds = _chunk_bounds(count.index_select(0, group), chunk_pairs)
        for c0, c1 in zip(bounds[:-1], bounds[1:]):
            c_rec, c_box, c_tid = g_rec[c0:c1], g_box[c0:c1], g_tid[c0:c1]
            if not use_span:
                _splat(keys, c_rec, c_tid, *_box_candidates(c_box), nf, npix, width)
                continue
            # Large triangles: spans per row, then pixels in sub-chunks so one huge triangle stays bounded.
            owner, xs, n, py = _span_rows(c_box, c_rec)
            rows = _chunk_bounds(n, chunk_pairs)
            for r0, r1 in zip(rows[:-1], rows[1:]):
                cand = _span_candidates(owner[r0:r1], xs[r0:r1], n[r0:r1], py[r0:r1])
                _splat(keys, c_rec, c_tid, *cand, nf, npix, width)
    face = keys & _LOW32
    return torch.where(keys == _EMPTY_KEY, torch.full_like(face, -1), face)


def rasterize_torch(pos: Tensor, tri: Tensor, height: int, width: int, chunk_pairs: int = 1 << 20) -> Tensor:
    """Rasterize clip-space triangles; see module docstring for the conventions.

    Args:
        pos: (B, V, 4) clip-space vertex positions (float32 or float64; may require grad).
        tri: (F, 3) integer vertex indices.
        height, width: output size.
        chunk_pairs: candidate pairs per chunk.
    Returns:
        (B, H, W, 4) in pos.dtype: (u, v, z/w, triangle_id + 1), zeros where empty; u, v carry gradients
        to pos.
    """
    tri = tri.to(device=pos.device, dtype=torch.int64)
    bsz = pos.shape[0]
    npix = height * width
    face = visible_triangles(pos, tri, height, width, chunk_pairs)
    covered = (face >= 0).nonzero().squeeze(1)
    out = torch.zeros(bsz * npix, 4, dtype=pos.dtype, device=pos.device)
    if covered.numel() == 0:
        return out.view(bsz, height, width, 4)
    f = face.index_select(0, covered)
    b = torch.div(covered, npix, rounding_mode="floor")
    rem = covered - b * npix
    row = torch.div(rem, width, rounding_mode="floor")
    col = rem - row * width
    xp = (2.0 * col.to(pos.dtype) + 1.0) / width - 1.0
    yp = (2.0 * row.to(pos.dtype) + 1.0) / height - 1.0
    corner = tri.index_select(0, f) + (b * pos.shape[1])[:, None]
    v = pos.reshape(-1, 4).index_select(0, corner.reshape(-1)).view(-1, 3, 4)   # (K, 3, 4)
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
