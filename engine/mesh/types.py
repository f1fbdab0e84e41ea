"""The triangle mesh value type shared by the mesh pipeline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh with optional per-corner UVs.

    Args:
        vertices: (V, 3) float32 positions.
        faces: (F, 3) int64 vertex indices.
        uvs: (F, 3, 2) float32 per-corner UVs (v up, [0, 1] for the texture square), or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def with_uvs(self, uvs: np.ndarray | None) -> Mesh:
        """A copy sharing vertices and faces, with `uvs` (F, 3, 2) replaced."""
        return Mesh(self.vertices, self.faces, None if uvs is None else np.asarray(uvs, dtype=np.float32))

    def face_points(self, bary: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        """Points on faces: (N,) face ids and (N, 3) barycentrics -> (N, 3) positions."""
        tri = self.vertices[self.faces[face_ids]]                  # (N, 3, 3)
        return np.einsum("nk,nkc->nc", bary, tri).astype(np.float32)
