"""Extracted-surface clean-up for text to mesh: marching cubes, largest component, decimation, manifold check.

Maintained libraries do the work: PyMCubes (marching cubes, as threestudio's `mc-cpu`), trimesh (connected
components), fast-simplification (quadric decimation).
"""

from __future__ import annotations

import logging

import numpy as np

from .types import Mesh

logger = logging.getLogger(__name__)


def marching_cubes(values: np.ndarray, level: float, radius: float) -> Mesh:
    """Triangulate the `level` set of a dense grid sampled at the corners of [-radius, radius]^3.

    Args:
        values: (N, N, N) scalar field, indexed [x, y, z], larger = more inside (e.g. density).
        level: iso-value (the official isosurface threshold for density).
        radius: half the edge of the sampled cube.
    Returns:
        Mesh with outward faces (empty when the level set misses the grid).
    """
    import mcubes

    n = values.shape[0]
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(values, dtype=np.float64), float(level))
    verts = (verts / (n - 1) * 2 - 1) * radius
    faces = faces.astype(np.int64)
    mesh = Mesh(verts.astype(np.float32), faces)
    if len(faces) and signed_volume(mesh) < 0:  # PyMCubes winds for values increasing outwards
        mesh = Mesh(mesh.vertices, faces[:, [0, 2, 1]].copy())
    return mesh


def signed_volume(mesh: Mesh) -> float:
    """Signed volume by the divergence theorem (positive for outward-facing closed meshes)."""
    v = mesh.vertices.astype(np.float64)[mesh.faces]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def largest_component(mesh: Mesh) -> Mesh:
    """The connected component (vertices welded) with the most faces; unused vertices dropped."""
    import trimesh

    if len(mesh.faces) == 0:
        return mesh
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    parts = tm.split(only_watertight=False)
    if len(parts) == 0:
        return mesh
    best = max(parts, key=lambda p: len(p.faces))
    logger.info(
        "largest component: %d of %d faces (%d components)", len(best.faces), len(tm.faces), len(parts)
    )
    return Mesh(np.asarray(best.vertices, dtype=np.float32), np.asarray(best.faces, dtype=np.int64))


def decimate(mesh: Mesh, face_budget: int) -> Mesh:
    """Quadric-decimate to at most `face_budget` faces (unchanged when already under it).

    Args:
        mesh: triangle mesh.
        face_budget: the most faces the result may have.
    """
    import fast_simplification

    if len(mesh.faces) <= face_budget:
        return mesh
    reduction = 1.0 - face_budget / len(mesh.faces)
    verts, faces = fast_simplification.simplify(
        mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), target_reduction=reduction
    )
    out = Mesh(np.asarray(verts, dtype=np.float32), np.asarray(faces, dtype=np.int64))
    if len(out.faces) > face_budget:  # the library may stop a little above the target
        verts, faces = fast_simplification.simplify(
            out.vertices, out.faces.astype(np.int32), target_count=face_budget
        )
        out = Mesh(np.asarray(verts, dtype=np.float32), np.asarray(faces, dtype=np.int64))
    return out


def non_manifold_edges(mesh: Mesh) -> int:
    """Edges used by other than exactly two faces (boundary or non-manifold): 0 for a closed 2-manifold."""
    if len(mesh.faces) == 0:
        return 0
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts != 2).sum())
