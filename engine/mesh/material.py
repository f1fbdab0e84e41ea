"""Reading a mesh file's base-colour texture (glTF baseColorTexture, OBJ/MTL map_Kd) as a float image."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MeshError


def _is_placeholder(image) -> bool:
    """trimesh gives UV-mapped meshes without a material a 2×2 grey stand-in (`visual.material.empty_material`)."""
    return image.size == (2, 2) and np.array_equal(np.asarray(image.convert("RGBA")),
                                                   np.tile(np.array([100, 100, 100, 255], np.uint8), (2, 2, 1)))


def _image_of(material) -> object | None:
    """The PIL image of a trimesh material's base colour, or None (also for trimesh's placeholder)."""
    for name in ("baseColorTexture", "image"):
        image = getattr(material, name, None)
        if image is not None:
            return None if _is_placeholder(image) else image
    return None


def load_base_color(path: str | Path) -> np.ndarray | None:
    """The base-colour texture of a mesh file: (H, W, 3|4) float32 in [0, 1], top row first; None without one.

    Args:
        path: .glb/.gltf (material baseColorTexture) or .obj (map_Kd of its MTL file).

    Raises:
        MeshError: the file's parts use different images (one texture per object is what editing writes back).
    """
    import trimesh

    from .io import _parts

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:
        raise MeshError(f"could not read {Path(path).name}", detail=f"{type(exc).__name__}: {exc}") from exc
    images = [_image_of(getattr(part.visual, "material", None)) for part in _parts(loaded)]
    found = [im for im in images if im is not None]
    if not found:
        return None
    arrays = [np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"), dtype=np.float32) / 255.0
              for im in found]
    if any(a.shape != arrays[0].shape or not np.array_equal(a, arrays[0]) for a in arrays[1:]):
        raise MeshError(f"{Path(path).name}: its parts use different base-colour images; pass one with --texture",
                        field="texture")
    return arrays[0]
