"""Wire arrays to numpy, checked against csd_blender.protocol.params.ARRAY_SPECS (and a camera rig against the mesh)
before any work starts."""

from __future__ import annotations

import numpy as np

from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.params import ARRAY_SPECS, MAX_CAMERAS, MAX_FACES, MAX_VERTICES
from csd_blender.protocol.messages import Array

from .errors import EngineError, RequestError

# Arrays that describe the mesh: their problems are INVALID_MESH, other arrays' are BAD_ARRAY.
MESH_ARRAYS = ("vertices", "faces", "uvs")
# index array -> the array whose first dimension it indexes
INDEX_ARRAYS = {"faces": "vertices"}
# named dimension -> (limit, what it counts)
DIM_LIMITS = {"V": (MAX_VERTICES, "vertices"), "F": (MAX_FACES, "faces")}


def _error(name: str, message: str, code: ErrorCode | None = None) -> EngineError:
    if code is None:
        code = ErrorCode.INVALID_MESH if name in MESH_ARRAYS else ErrorCode.BAD_ARRAY
    return EngineError(code, f"{name}: {message}", field=name)


def to_numpy(array: Array) -> np.ndarray:
    """A wire array as a writable numpy array (copied out of the frame).

    Args:
        array: a decoded `Array` (its byte length was already checked against dtype and shape).
    """
    return _view(array).astype(array.dtype, copy=True)


def _view(array: Array) -> np.ndarray:
    """A read-only numpy view of a wire array's frame (no copy: rejected input costs no memory)."""
    dtype = np.dtype(array.dtype).newbyteorder("<")
    return np.frombuffer(array.data, dtype=dtype).reshape(array.shape)


def _count_non_finite(value: np.ndarray, chunk: int = 1 << 20) -> int:
    """Non-finite entries of a float array, checked in chunks so the temporaries stay small (4 MB at most)."""
    flat = value.reshape(-1)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + chunk]))) for i in range(0, flat.size, chunk))


def from_numpy(value: np.ndarray) -> Array:
    """A numpy array as a wire array (little-endian, C-contiguous; no copy when already so).

    Args:
        value: an array whose dtype is in the protocol's allow-list.
    """
    value = np.asarray(value)
    if value.dtype == np.float64:
        value = value.astype(np.float32)
    if value.dtype == np.bool_:
        value = value.astype(np.uint8)
    value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    return Array(value.dtype.name, tuple(int(d) for d in value.shape), value)


def check_arrays(task: str, arrays: dict[str, Array]) -> dict[str, np.ndarray]:
    """Validate a submit's arrays for `task` and convert them to numpy.

    Checks, in order: known names, required arrays present, dtype, rank and fixed dimensions, named
    dimensions consistent across arrays (uvs F == faces F), face/vertex limits (MESH_TOO_LARGE, checked on
    the shapes before the data is read), empty meshes, finite floats and index ranges.

    Args:
        task: a task name with an entry in ARRAY_SPECS.
        arrays: name -> decoded wire array.

    Returns:
        name -> numpy array (writable copies).

    Raises:
        EngineError: BAD_ARRAY, INVALID_MESH or MESH_TOO_LARGE naming the array.
    """
    specs = ARRAY_SPECS.get(task, {})
    unknown = sorted(set(arrays) - set(specs))
    if unknown:
        raise _error(
            unknown[0], f"unknown array for task {task!r} (known: {', '.join(specs)})", ErrorCode.BAD_ARRAY
        )
    dims: dict[str, tuple[int, str]] = {}
    for name, (dtype, shape, required) in specs.items():
        if name not in arrays:
            if required:
                raise _error(name, "is required", ErrorCode.BAD_ARRAY)
            continue
        array = arrays[name]
        if array.dtype != dtype:
            raise _error(name, f"dtype is {array.dtype}, expected {dtype}", ErrorCode.BAD_ARRAY)
        if len(array.shape) != len(shape):
            raise _error(
                name,
                f"shape {list(array.shape)} has {len(array.shape)} dimensions, expected "
                f"{len(shape)} ({', '.join(map(str, shape))})",
                ErrorCode.BAD_ARRAY,
            )
        for axis, (want, got) in enumerate(zip(shape, array.shape)):
            if isinstance(want, int) and want >= 0 and want != got:
                raise _error(name, f"dimension {axis} is {got}, expected {want}", ErrorCode.BAD_ARRAY)
            if isinstance(want, str):
                if want in dims and dims[want][0] != got:
                    other = dims[want][1]
                    raise _error(
                        name, f"has {got} along {want} but {other} has {dims[want][0]}", ErrorCode.BAD_ARRAY
                    )
                dims.setdefault(want, (got, name))
    for dim, (limit, what) in DIM_LIMITS.items():
        if dim in dims and dims[dim][0] > limit:
            count, name = dims[dim]
            raise _error(name, f"{count} {what}; the limit is {limit}", ErrorCode.MESH_TOO_LARGE)
    for dim, (_, what) in DIM_LIMITS.items():
        if dim in dims and dims[dim][0] == 0:
            raise _error(dims[dim][1], f"has no {what}", ErrorCode.INVALID_MESH)
    views = {name: _view(array) for name, array in arrays.items()}  # checked in place, copied once valid
    for name, value in views.items():
        if value.dtype.kind == "f":
            bad = _count_non_finite(value)
            if bad:
                raise _error(name, f"{bad} value(s) are NaN or infinite")
    for name, target in INDEX_ARRAYS.items():
        if name in views and target in views:
            index, count = views[name], views[target].shape[0]
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= count:
                bad = lo if lo < 0 else hi
                raise _error(name, f"index {bad} is out of range [0, {count}) of {target}")
    return {name: value.astype(value.dtype.newbyteorder("="), copy=True) for name, value in views.items()}


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
        arrays: validated numpy arrays of a submit (after `check_arrays`: finite, consistent N).

    Raises:
        EngineError: BAD_REQUEST naming `c2w` or `intrinsics` and the camera at fault.
    """
    c2w, intr = arrays.get("c2w"), arrays.get("intrinsics")
    if c2w is None and intr is None:
        return
    if c2w is None or intr is None:
        missing = "c2w" if c2w is None else "intrinsics"
        raise RequestError(missing, "a camera rig needs both c2w and intrinsics; this one is missing")
    n = len(c2w)
    if n == 0:
        raise RequestError("c2w", "a camera rig needs at least one camera, got N = 0")
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
