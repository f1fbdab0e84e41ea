"""Export a textured mesh as GLB (trimesh) or OBJ + MTL + PNG, with exact UV seams."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .axes import from_world
from .io import save_png, to_uint8
from .types import Mesh

logger = logging.getLogger(__name__)


def split_by_uv(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One output vertex per unique (vertex, uv) pair, so per-vertex UVs reproduce per-corner UVs exactly.

    Args:
        mesh: mesh with per-corner uvs (F, 3, 2).

    Returns:
        (vertices (V', 3) float32, faces (F, 3) int64, uv (V', 2) float32).
    """
    if mesh.uvs is None:
        raise ValueError("mesh.uvs: exporting a textured mesh needs per-corner UVs")
    corner_v = mesh.faces.reshape(-1).astype(np.int64)
    corner_uv = np.ascontiguousarray(mesh.uvs.reshape(-1, 2), dtype=np.float32)
    key = np.concatenate([corner_v[:, None].view(np.int32).reshape(-1, 2), corner_uv.view(np.int32)], 1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)                        # keep first-occurrence order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keep = first[order]
    faces = rank[inverse.reshape(-1)].reshape(-1, 3)
    return mesh.vertices[corner_v[keep]].astype(np.float32), faces.astype(np.int64), corner_uv[keep]


def _trimesh(mesh: Mesh, image: np.ndarray, up: str):
    import trimesh
    from PIL import Image

    vertices, faces, uv = split_by_uv(mesh)
    vertices = from_world(vertices, up)
    material = trimesh.visual.material.PBRMaterial(
        name="csd_texture", baseColorTexture=Image.fromarray(to_uint8(image)),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0, roughnessFactor=1.0)
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)


def export_glb(path: str | Path, mesh: Mesh, image: np.ndarray, up: str = "z") -> Path:
    """Write a binary glTF with the texture as base colour.

    Args:
        path: output .glb file.
        mesh: mesh with per-corner UVs.
        image: (H, W, 3|4) float [0, 1] texture, top row first.
        up: up axis written to the file ("y" is glTF's convention: what Blender's importer expects).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = _trimesh(mesh, image, up).export(file_type="glb")
    p.write_bytes(data)
    logger.info("wrote %s (%d bytes)", p, len(data))
    return p


def export_obj(directory: str | Path, mesh: Mesh, image: np.ndarray, name: str = "textured", up: str = "z") -> Path:
    """Write `name.obj`, `name.mtl` and `texture.png` into `directory`.

    Args:
        directory: output folder (created).
        mesh: mesh with per-corner UVs.
        image: (H, W, 3|4) float [0, 1] texture, top row first.
        name: base name of the .obj and .mtl files.
        up: up axis written to the file ("y" is what Blender's OBJ importer assumes by default).

    Returns:
        Path of the .obj file.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vertices, faces, uv = split_by_uv(mesh)
    vertices = from_world(vertices, up)
    save_png(d / "texture.png", image)
    (d / f"{name}.mtl").write_text(
        "# CSD for Blender\nnewmtl csd_texture\nKa 1.000000 1.000000 1.000000\n"
        "Kd 1.000000 1.000000 1.000000\n"
        "Ks 0.000000 0.000000 0.000000\nNs 1.000000\nillum 1\nmap_Kd texture.png\n")
    lines = [f"# CSD for Blender: {len(vertices)} vertices, {len(faces)} faces", f"mtllib {name}.mtl",
             f"o {name}"]
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in vertices.tolist()]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in uv.tolist()]
    lines.append("usemtl csd_texture")
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in (faces + 1).tolist()]
    obj = d / f"{name}.obj"
    obj.write_text("\n".join(lines) + "\n")
    logger.info("wrote %s (+ %s.mtl, texture.png)", obj, name)
    return obj
