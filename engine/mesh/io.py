"""Reading meshes (OBJ/PLY/GLB/GLTF/STL via trimesh) and texture images (PNG writing lives in engine.images)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import EngineError, ErrorCode, MeshError
from ..images import save_png, to_uint8  # noqa: F401 - re-exported for engine.mesh users
from .axes import file_up_axis, to_world
from .types import Mesh
from .validate import validate_mesh

logger = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf", ".stl")


def _parts(loaded) -> list:
    """Triangle geometries of a trimesh load result, with scene-graph transforms applied."""
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        return [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    if isinstance(loaded, trimesh.Trimesh):
        return [loaded]
    return []


def _part_uvs(part) -> np.ndarray | None:
    uv = getattr(part.visual, "uv", None)
    if uv is None or len(uv) != len(part.vertices):
        return None
    return np.asarray(uv, dtype=np.float32)[np.asarray(part.faces)]


def weld_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with bit-identical positions (keeps first-occurrence order).

    Loaders split vertices at UV seams; welding restores the surface's connectivity while per-corner UVs
    keep the seams. Args: vertices (V, 3), faces (F, 3). Returns (vertices (V', 3), faces (F, 3)).
    """
    _, first, inverse = np.unique(vertices, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return vertices[first[order]], rank[inverse.reshape(-1)][faces]


def load_mesh(path: str | Path, up: str = "z") -> Mesh:
    """Load a triangle mesh; scenes are concatenated, quads triangulated, per-corner UVs kept.

    Args:
        path: .obj, .ply, .glb, .gltf or .stl file.
        up: the file's up axis, converted to the Z-up world: "z" (none), "y", or "auto" (Blender's importer
            default for the extension: Y for OBJ/glTF, Z for PLY/STL; see engine/mesh/axes.py).

    Returns:
        A validated Mesh (degenerate faces dropped); uvs is None unless every part has UVs.

    Raises:
        MeshError: missing file, unsupported extension, empty file, not a mesh, or an invalid mesh.
    """
    import trimesh

    p = Path(path)
    ext = p.suffix.lower()
    up = file_up_axis(p, up)
    if ext not in SUPPORTED_EXTENSIONS:
        raise MeshError(f"unsupported mesh format '{ext or p.name}' for {p.name}; "
                        f"supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if not p.exists():
        raise MeshError(f"mesh file not found: {p}")
    if not p.is_file():
        raise MeshError(f"mesh path is not a file: {p}")
    if p.stat().st_size == 0:
        raise MeshError(f"mesh file is empty: {p.name}")
    try:
        # maintain_order must stay False: with True, trimesh keeps OBJ vertex order and loses seam UVs
        loaded = trimesh.load(str(p), process=False)
    except Exception as exc:
        raise MeshError(f"could not read {p.name} as {ext[1:].upper()}: not a valid mesh file",
                        detail=f"{type(exc).__name__}: {exc}") from exc
    parts = [g for g in _parts(loaded) if len(g.faces) > 0]
    if not parts:
        raise MeshError(f"{p.name} contains no triangles: not a mesh file or an empty mesh")
    vertices, faces, uvs = [], [], []
    base = 0
    for g in parts:
        vertices.append(np.asarray(g.vertices, dtype=np.float64))
        faces.append(np.asarray(g.faces, dtype=np.int64) + base)
        uvs.append(_part_uvs(g))
        base += len(g.vertices)
    v = to_world(np.concatenate(vertices), up).astype(np.float32)
    f = np.concatenate(faces)
    uv = np.concatenate(uvs) if all(u is not None for u in uvs) else None
    if uv is None and any(u is not None for u in uvs):
        logger.warning("%s: only some parts have UVs; ignoring UVs (the mesh will be unwrapped)", p.name)
    if np.isfinite(v).all():
        v, f = weld_vertices(v, f)
    mesh, dropped = validate_mesh(v, f, uv)
    if dropped:
        logger.info("%s: dropped %d degenerate faces", p.name, dropped)
    return mesh


def load_texture_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, C) float32 in [0, 1], top row first (C = 3 or 4).

    Raises:
        EngineError: NO_TEXTURE naming field `texture` when the file is missing, unreadable or not an image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
            return np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EngineError(ErrorCode.NO_TEXTURE, f"texture: cannot read the image {str(path)!r} ({reason})",
                          field="texture") from None
