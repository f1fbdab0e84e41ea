"""Meshes: load and validate, normalise, UV unwrap (xatlas), bake a field into a UV texture with seam padding,
export. May import render/, images and errors; nothing above."""
from .bake import BakeResult, bake, bake_texture
from .export import export_glb, export_obj, split_by_uv
from .io import load_mesh, load_texture_image, save_png
from .normalize import Normalization, normalize
from .types import Mesh
from .unwrap import clear_unwrap_cache, ensure_uvs, unwrap
from .validate import degenerate_faces, validate_mesh

__all__ = [
    "BakeResult", "Mesh", "Normalization", "bake", "bake_texture", "clear_unwrap_cache", "degenerate_faces",
    "ensure_uvs", "export_glb", "export_obj", "load_mesh", "load_texture_image", "normalize", "save_png",
    "split_by_uv", "unwrap", "validate_mesh",
]
