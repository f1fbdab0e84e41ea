"""A user's camera rig, checked once where every job enters (`make_texture_job`, for the CLI and the server alike):
shapes, rigid transforms, sane intrinsics, and at least one camera that sees the mesh."""

from __future__ import annotations

import numpy as np

from csd_blender.protocol.params import MAX_CAMERAS

from ..errors import RequestError

# A rig camera's image: whole pixels up to this edge, and a field of view in this range (degrees) on both axes.
MAX_RIG_PIXELS = 16384
RIG_FOV_RANGE = (0.1, 170.0)
# The texture task renders the mesh normalised to a unit cube with near/far planes at these distances.
NEAR, FAR = 0.01, 100.0


def check_rig(arrays: dict[str, np.ndarray]) -> None:
    """Check a camera rig (`c2w` (N,4,4), `intrinsics` (N,6)) against the mesh (`vertices` (V,3)), if any.

    Both or neither array; 1 ≤ N ≤ MAX_CAMERAS; each c2w a rigid transform (orthonormal rotation, bottom row
    0 0 0 1); intrinsics rows [fx, fy, cx, cy, width, height] with whole-pixel sizes up to MAX_RIG_PIXELS, fields
    of view in RIG_FOV_RANGE and the principal point near the image; and at least one camera sees the mesh: its
    bounding box lies partly in front of the camera (between the near and far planes of the normalised mesh)
    and its projection overlaps the image.

    Args:
        arrays: the job's numpy arrays (a submit's after `check_arrays`, or the CLI's from files).

    Raises:
        EngineError: BAD_REQUEST naming `c2w` or `intrinsics` and the camera at fault.
    """
    c2w, intr = arrays.get("c2w"), arrays.get("intrinsics")
    if c2w is None and intr is None:
        return
    if c2w is None or intr is None:
        missing = "c2w" if c2w is None else "intrinsics"
        raise RequestError(missing, "a camera rig needs both c2w and intrinsics; this one is missing")
    c2w, intr = np.asarray(c2w), np.asarray(intr)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise RequestError("c2w", f"must be (N, 4, 4), got {c2w.shape}")
    n = len(c2w)
    if n == 0:
        raise RequestError("c2w", "a camera rig needs at least one camera, got N = 0")
    if intr.shape != (n, 6):
        raise RequestError("intrinsics", f"must be ({n}, 6), got {intr.shape}")
    if not np.isfinite(c2w).all():
        raise RequestError("c2w", "camera matrices must be finite (found NaN or inf)")
    if not np.isfinite(intr).all():
        raise RequestError("intrinsics", "must be finite (found NaN or inf)")
    if n > MAX_CAMERAS:
        raise RequestError("c2w", f"{n} cameras; the limit is {MAX_CAMERAS}")
    m = c2w.astype(np.float64)
    bottom = np.abs(m[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    if (bottom > 1e-4).any():
        raise RequestError("c2w", f"camera {int(np.argmax(bottom > 1e-4))}: the bottom row must be [0, 0, 0, 1]")
    rot = m[:, :3, :3]
    ortho = np.abs(np.einsum("nij,nkj->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    if (ortho > 1e-3).any():
        raise RequestError("c2w", f"camera {int(np.argmax(ortho > 1e-3))}: the rotation part must be orthonormal "
                                  "(remove scale from matrix_world)")
    k = intr.astype(np.float64)
    fx, fy, cx, cy, w, h = k.T
    size_ok = (w >= 1) & (h >= 1) & (w <= MAX_RIG_PIXELS) & (h <= MAX_RIG_PIXELS) & (w == np.round(w)) & (
        h == np.round(h))
    if not size_ok.all():
        i = int(np.argmax(~size_ok))
        raise RequestError("intrinsics", f"camera {i}: width and height must be whole pixels in [1, "
                                         f"{MAX_RIG_PIXELS}], got {w[i]:g} x {h[i]:g}")
    with np.errstate(divide="ignore", over="ignore"):
        fov_x = np.degrees(2 * np.arctan2(w / 2, fx))
        fov_y = np.degrees(2 * np.arctan2(h / 2, fy))
    lo, hi = RIG_FOV_RANGE
    fov_ok = (fx > 0) & (fy > 0) & (fov_x >= lo) & (fov_x <= hi) & (fov_y >= lo) & (fov_y <= hi)
    if not fov_ok.all():
        i = int(np.argmax(~fov_ok))
        raise RequestError("intrinsics", f"camera {i}: fx = {fx[i]:g} and fy = {fy[i]:g} must be > 0 and give a "
                                         f"field of view in [{lo}, {hi}] degrees for {w[i]:g} x {h[i]:g} pixels")
    centre_ok = (np.abs(cx - (w - 1) / 2) <= 2 * w) & (np.abs(cy - (h - 1) / 2) <= 2 * h)
    if not centre_ok.all():
        i = int(np.argmax(~centre_ok))
        raise RequestError("intrinsics", f"camera {i}: the principal point ({cx[i]:g}, {cy[i]:g}) is more than two "
                                         "image sizes away from the image centre")
    vertices = arrays.get("vertices")
    if vertices is not None and len(vertices) and not rig_sees_box(m, k, vertices.min(0), vertices.max(0)).any():
        raise RequestError("c2w", "no camera of the rig sees the mesh (its bounding box is behind every camera, "
                                  "outside every image or too far away); aim at least one camera at the object")


_BOX_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


def rig_sees_box(c2w: np.ndarray, intrinsics: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N,) bool: which cameras see part of the axis-aligned box [lo, hi] (Blender cameras look down −Z).

    The box is clipped to the part between the near and far planes (scaled by its largest extent, as the texture
    task normalises the mesh): its corners there and the points where its edges cross the near plane are
    projected, and the camera sees the box when their bounding rectangle overlaps the image.

    Args:
        c2w: (N, 4, 4) camera-to-world matrices.
        intrinsics: (N, 6) rows [fx, fy, cx, cy, width, height] in pixels (row y down).
        lo, hi: (3,) box corners in world space.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    extent = max(float((hi - lo).max()), 1e-12)
    near, far = NEAR * extent, FAR * extent
    corners = np.array([[(lo, hi)[(i >> 2) & 1][0], (lo, hi)[(i >> 1) & 1][1], (lo, hi)[i & 1][2]]
                        for i in range(8)])
    rot, t = c2w[:, :3, :3], c2w[:, :3, 3]
    cam = np.einsum("nij,nci->ncj", rot, corners[None] - t[:, None])  # (N, 8, 3): R^T (p - t)
    a, b = cam[:, _BOX_EDGES[:, 0]], cam[:, _BOX_EDGES[:, 1]]  # (N, 12, 3) edge ends
    da, db = -a[..., 2], -b[..., 2]
    crosses = (da > near) != (db > near)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(crosses, (near - da) / (db - da), 0.0)
    cut = a + s[..., None] * (b - a)  # on the near plane where an edge crosses it
    points = np.concatenate([cam, cut], axis=1)  # (N, 20, 3)
    depth = -points[..., 2]
    keep = np.concatenate([(-cam[..., 2] > near) & (-cam[..., 2] < far), crosses], axis=1)
    safe = np.where(keep, depth, 1.0)
    fx, fy, cx, cy, w, h = (intrinsics[:, i:i + 1] for i in range(6))
    u = cx + fx * points[..., 0] / safe
    v = cy - fy * points[..., 1] / safe
    u_lo, u_hi = np.where(keep, u, np.inf).min(1), np.where(keep, u, -np.inf).max(1)
    v_lo, v_hi = np.where(keep, v, np.inf).min(1), np.where(keep, v, -np.inf).max(1)
    overlap_u = (u_hi >= -0.5) & (u_lo <= w[:, 0] - 0.5)
    overlap_v = (v_hi >= -0.5) & (v_lo <= h[:, 0] - 0.5)
    return keep.any(1) & overlap_u & overlap_v
