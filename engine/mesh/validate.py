"""Mesh validation: finite coordinates, valid indices, size limits, degenerate faces dropped and counted."""
from __future__ import annotations

import logging

import numpy as np

from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.params import MAX_FACES, MAX_VERTICES

from ..errors import MeshError
from .types import Mesh

logger = logging.getLogger(__name__)


def _too_large(message: str) -> MeshError:
    err = MeshError(message)
    err.code = ErrorCode.MESH_TOO_LARGE
    return err


def degenerate_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: faces with a repeated vertex index or zero area (relative to the mesh size).

    Args:
        vertices: (V, 3) float positions.
        faces: (F, 3) integer indices (already range-checked).
    """
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    v = vertices.astype(np.float64)
    tri = v[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    extent = float(np.ptp(v, axis=0).max()) if len(v) else 0.0
    return repeated | (area2 <= (extent * extent) * 1e-14)


def validate_mesh(vertices, faces, uvs=None, max_faces: int = MAX_FACES,
                  max_vertices: int = MAX_VERTICES) -> tuple[Mesh, int]:
    """Check a mesh and drop its degenerate faces.

    Args:
        vertices: (V, 3) array-like of finite floats.
        faces: (F, 3) array-like of integer indices in [0, V).
        uvs: optional (F, 3, 2) per-corner UVs (finite).
        max_faces: largest accepted F (protocol MAX_FACES).
        max_vertices: largest accepted V (protocol MAX_VERTICES).

    Returns:
        (mesh, dropped): the clean Mesh (float32 vertices, int64 faces, float32 uvs or None) and the number
        of degenerate faces (zero area or a repeated index) removed.

    Raises:
        MeshError: with a message naming the problem (`vertices: ...`, `faces: ...`, `uvs: ...`).
    """
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"vertices: expected shape (V, 3), got {v.shape}")
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
        raise MeshError(f"vertices: expected numbers, got dtype {v.dtype}")
    if v.shape[0] == 0:
        raise MeshError("vertices: the mesh has no vertices")
    if v.shape[0] > max_vertices:
        raise _too_large(f"vertices: {v.shape[0]} vertices; the limit is {max_vertices}")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise MeshError(f"vertices: {int(bad.sum())} vertices have non-finite (NaN or inf) coordinates, "
                        f"first is vertex {i} = {v[i].tolist()}")
    if f.size == 0:
        raise MeshError("faces: the mesh has zero faces")
    if f.ndim != 2 or f.shape[1] != 3:
        raise MeshError(f"faces: expected shape (F, 3) triangles, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise MeshError(f"faces: expected an integer dtype, got {f.dtype}")
    if f.shape[0] > max_faces:
        raise _too_large(f"faces: {f.shape[0]} faces; the limit is {max_faces}")
    lo, hi = int(f.min()), int(f.max())
    if lo < 0:
        raise MeshError(f"faces: negative vertex index {lo} (face {int(np.argmax((f < 0).any(axis=1)))})")
    if hi >= v.shape[0]:
        face = int(np.argmax((f >= v.shape[0]).any(axis=1)))
        raise MeshError(f"faces: vertex index {hi} out of range for {v.shape[0]} vertices (face {face})")
    uv = None
    if uvs is not None:
        uv = np.asarray(uvs)
        if uv.shape != (f.shape[0], 3, 2):
            raise MeshError(f"uvs: expected shape ({f.shape[0]}, 3, 2) per-corner UVs, got {uv.shape}")
        if not np.isfinite(uv).all():
            raise MeshError("uvs: non-finite (NaN or inf) UV coordinates")
        uv = uv.astype(np.float32)
    v32 = v.astype(np.float32)
    f64 = f.astype(np.int64)
    degenerate = degenerate_faces(v32, f64)
    dropped = int(degenerate.sum())
    if dropped == f.shape[0]:
        raise MeshError(f"faces: all {dropped} faces are degenerate (zero area or a repeated vertex index)")
    if dropped:
        logger.info("dropped %d degenerate faces of %d", dropped, f.shape[0])
        keep = ~degenerate
        f64 = f64[keep]
        uv = None if uv is None else uv[keep]
    return Mesh(np.ascontiguousarray(v32), np.ascontiguousarray(f64), uv), dropped
