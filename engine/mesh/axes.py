"""Up-axis conventions of mesh files versus the engine's Z-up world (Blender's).

glTF is Y-up by specification, and Blender's OBJ importer/exporter assume Y-up by default (forward −Z, up Y);
its PLY and STL importers assume Z-up. A Y-up file point (x, y, z) is the world point (x, −z, y).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

UP_AXES = ("auto", "y", "z")
_Y_UP_DEFAULT = (".obj", ".glb", ".gltf")


def file_up_axis(path: str | Path, up: str = "auto") -> str:
    """The up axis of a file: `up` itself, or for "auto" the Blender importer's default for its extension.

    Args:
        path: the mesh file.
        up: "auto", "y" or "z".
    """
    if up not in UP_AXES:
        raise ValueError(f"up: must be one of {', '.join(UP_AXES)}, got {up!r}")
    if up != "auto":
        return up
    return "y" if Path(path).suffix.lower() in _Y_UP_DEFAULT else "z"


def to_world(vertices: np.ndarray, up: str) -> np.ndarray:
    """File coordinates (V, 3) with the given up axis → Z-up world coordinates."""
    if up == "z":
        return vertices
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1).astype(vertices.dtype)


def from_world(vertices: np.ndarray, up: str) -> np.ndarray:
    """Z-up world coordinates (V, 3) → file coordinates with the given up axis."""
    if up == "z":
        return vertices
    return np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1).astype(vertices.dtype)
