"""Normalisation into the unit cube [-0.5, 0.5]^3 (bbox centre at 0, longest side 1) and back."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MeshError
from .types import Mesh


@dataclass(frozen=True)
class Normalization:
    """The similarity `v -> (v - center) * scale`.

    Args:
        center: (3,) bbox centre of the original mesh.
        scale: 1 / longest bbox side.
    """

    center: np.ndarray
    scale: float

    def apply(self, v: np.ndarray) -> np.ndarray:
        """(..., 3) original coordinates -> normalised (float32)."""
        return ((np.asarray(v, dtype=np.float64) - self.center) * self.scale).astype(np.float32)

    def invert(self, v: np.ndarray) -> np.ndarray:
        """(..., 3) normalised coordinates -> original (float32)."""
        return (np.asarray(v, dtype=np.float64) / self.scale + self.center).astype(np.float32)


def normalize(mesh: Mesh) -> tuple[Mesh, Normalization]:
    """Centre the bounding box at 0 and scale its longest side to 1.

    Args:
        mesh: any valid mesh.

    Returns:
        (normalised mesh sharing faces and UVs, Normalization to map points back).
    """
    v = mesh.vertices.astype(np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise MeshError("vertices: all vertices coincide; the mesh has no extent")
    norm = Normalization(center=(lo + hi) / 2.0, scale=1.0 / extent)
    return Mesh(norm.apply(v), mesh.faces, mesh.uvs), norm
