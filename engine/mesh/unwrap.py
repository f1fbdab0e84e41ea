"""UV unwrapping with xatlas (per-corner UVs on the original faces), cached in-process."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from ..errors import MeshError
from .types import Mesh

logger = logging.getLogger(__name__)

_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def mesh_key(mesh: Mesh, *extra: object) -> str:
    """A content hash of (vertices, faces) plus any extra parameters."""
    h = hashlib.sha1()
    arrays = (np.ascontiguousarray(mesh.vertices, dtype=np.float32),
              np.ascontiguousarray(mesh.faces, dtype=np.int64))
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()


def unwrap(mesh: Mesh, resolution: int = 1024, padding: int = 8) -> np.ndarray:
    """Unwrap a mesh with xatlas.

    Args:
        mesh: a validated mesh (its own UVs, if any, are ignored).
        resolution: atlas resolution xatlas packs for (texels per side).
        padding: texels between charts at that resolution (bilinear-safe seams).

    Returns:
        (F, 3, 2) float32 per-corner UVs in [0, 1] (v up) on the ORIGINAL faces, in the same order.
        Results are cached per (vertices, faces, resolution, padding) in this process.
    """
    import xatlas

    key = mesh_key(mesh, resolution, padding)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key].copy()
    start = time.perf_counter()
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                   np.ascontiguousarray(mesh.faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(resolution)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    if indices.shape != mesh.faces.shape:
        raise MeshError(f"UV unwrap failed: xatlas returned {indices.shape[0]} faces for {mesh.num_faces}")
    # xatlas keeps the face order; check that each corner maps back to the same input vertex
    if not np.array_equal(vmapping[indices], mesh.faces):
        raise MeshError("UV unwrap failed: xatlas reordered the faces")
    out = np.asarray(uvs, dtype=np.float32)[indices]
    logger.info("xatlas unwrapped %d faces into %d charts in %.2f s", mesh.num_faces, atlas.chart_count,
                time.perf_counter() - start)
    with _CACHE_LOCK:
        _CACHE[key] = out
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return out.copy()


def ensure_uvs(mesh: Mesh, **unwrap_args) -> tuple[np.ndarray, bool]:
    """The mesh's own UVs when present, else an xatlas unwrap.

    Args:
        mesh: a validated mesh.
        **unwrap_args: passed to `unwrap` (resolution, padding).

    Returns:
        (uvs (F, 3, 2) float32, unwrapped): `unwrapped` is True when xatlas produced them.
    """
    if mesh.uvs is not None:
        return np.asarray(mesh.uvs, dtype=np.float32), False
    return unwrap(mesh, **unwrap_args), True


def clear_unwrap_cache() -> None:
    """Forget cached unwraps (tests, memory release)."""
    with _CACHE_LOCK:
        _CACHE.clear()
