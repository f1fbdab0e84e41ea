"""Meshes: load and validate, normalise, UV unwrap, bake a field into a UV texture, export."""
from engine.mesh.bake import BakeResult, bake, bake_texture
from engine.mesh.export import export_glb, export_obj, split_by_uv
from engine.mesh.io import load_mesh, load_texture_image, save_png
from engine.mesh.normalize import Normalization, normalize
from engine.mesh.types import Mesh
from engine.mesh.unwrap import clear_unwrap_cache, ensure_uvs, unwrap
from engine.mesh.validate import degenerate_faces, validate_mesh

__all__ = [
    "BakeResult", "Mesh", "Normalization", "bake", "bake_texture", "clear_unwrap_cache", "degenerate_faces",
    "ensure_uvs", "export_glb", "export_obj", "load_mesh", "load_texture_image", "normalize", "save_png",
    "split_by_uv", "unwrap", "validate_mesh",
]
