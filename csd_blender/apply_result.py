"""Put a finished texture job into the scene non-destructively: new image, material, slot, maybe a UV map.

Nothing is created before the result is complete; if applying fails half-way, what was created is removed
again, so a failed job leaves the file as it was. The previous material stays in its slot and in the file.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from . import convert
from .job_params import PARAMS_KEY, RESOLVED_KEY

log = logging.getLogger(__name__)

CSD_UV_NAME = "CSD_UV"


@dataclass
class AppliedTexture:
    """What apply_texture created."""

    image: object
    material: object
    uv_name: str
    slot_index: int
    new_uv_map: bool


def check_texture(texture: np.ndarray, uvs: np.ndarray | None, n_faces: int) -> None:
    """Raise ValueError when the engine's arrays do not fit the mesh that was sent.

    Args:
        texture: (S,S,3|4) float32 in [0, 1].
        uvs: (F,3,2) float32 or None.
        n_faces: triangles sent.
    """
    if texture.ndim != 3 or texture.shape[2] not in (3, 4) or texture.shape[0] < 1 or texture.shape[1] < 1:
        raise ValueError(f"texture: expected (S, S, 3|4), got shape {texture.shape}")
    if not np.isfinite(texture).all():
        raise ValueError("texture: contains NaN or infinite values")
    if uvs is not None and uvs.shape != (n_faces, 3, 2):
        raise ValueError(f"uvs: expected ({n_faces}, 3, 2) for the {n_faces} triangles sent, got {uvs.shape}")


def _principled(node_tree):
    for node in node_tree.nodes:
        if node.type == "BSDF_PRINCIPLED":
            return node
    bsdf = node_tree.nodes.new("ShaderNodeBsdfPrincipled")
    output = next((n for n in node_tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
    if output is None:
        output = node_tree.nodes.new("ShaderNodeOutputMaterial")
    node_tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    return bsdf


def build_material(name: str, image, uv_name: str):
    """A new material: Principled BSDF base colour <- Image Texture <- UV Map node naming `uv_name`.

    Args:
        name: material name.
        image: the bpy Image.
        uv_name: the UV map the texture was made for.
    """
    import bpy

    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:              # Blender < 5.0 creates materials without nodes
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = _principled(mat.node_tree)
    tex = nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = "CSD Texture"
    tex.image = image
    tex.location = (bsdf.location.x - 400, bsdf.location.y)
    uv = nodes.new("ShaderNodeUVMap")
    uv.name = uv.label = "CSD UV Map"
    uv.uv_map = uv_name
    uv.location = (tex.location.x - 250, tex.location.y - 100)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _tag(datablock, params_json: str, resolved_json: str) -> None:
    datablock[PARAMS_KEY] = params_json
    datablock[RESOLVED_KEY] = resolved_json


def apply_texture(obj, mesh_info: convert.MeshArrays, texture: np.ndarray, uvs: np.ndarray | None,
                  meta: dict, params_json: str, name: str = "CSD Texture") -> AppliedTexture:
    """Create the result datablocks and assign the new material to every face of `obj`.

    Args:
        obj: the mesh object the job was run on.
        mesh_info: what convert.mesh_arrays sent (UV map name, loop mapping).
        texture: (S,S,3|4) float32, top row first, sRGB.
        uvs: (F,3,2) float32 per-corner UVs the texture was baked for.
        meta: the result's meta ("unwrapped", "params").
        params_json: the request's parameters as stored for reproduction (job_params.dumps_params).
        name: base name of the image and material.

    Raises:
        ValueError: the result does not fit the mesh (nothing is left behind).
    """
    import bpy

    unwrapped = bool(meta.get("unwrapped", mesh_info.uv_name is None))
    # the returned UVs matter only when the engine made them; with the user's UVs the UV map is used as is
    check_texture(texture, uvs if unwrapped else None, mesh_info.faces.shape[0])
    if unwrapped and uvs is None:
        raise ValueError("the engine unwrapped the mesh but returned no uvs")
    if unwrapped and not mesh_info.maps_to_original:
        raise ValueError(f"{obj.name!r}: its modifiers change the topology, so the engine's UV unwrap cannot "
                         "be written back; add a UV map or apply the modifiers")
    resolved_json = json.dumps(meta.get("params", {}), sort_keys=True)
    mesh = obj.data
    if unwrapped and len(mesh.loops) != mesh_info.n_loops:
        raise ValueError(f"{obj.name!r} was edited while the job ran ({mesh_info.n_loops} corners then, "
                         f"{len(mesh.loops)} now); run the job again")
    created_image = material = layer = None
    slot_index = -1
    old_indices = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("material_index", old_indices)
    try:
        created_image = convert.image_from_array(name, texture, srgb=True, pack=True)
        _tag(created_image, params_json, resolved_json)
        if unwrapped:
            layer = convert.write_uv_layer(mesh, CSD_UV_NAME, uvs, mesh_info.tri_loops)
            uv_name = layer.name
        else:
            uv_name = mesh_info.uv_name
        material = build_material(name, created_image, uv_name)
        _tag(material, params_json, resolved_json)
        mesh.materials.append(material)
        slot_index = len(mesh.materials) - 1
        mesh.polygons.foreach_set("material_index", np.full(len(mesh.polygons), slot_index, dtype=np.int32))
        mesh.update()
        _tag(obj, params_json, resolved_json)
    except Exception:
        log.exception("applying the texture result failed; removing what was created")
        if slot_index >= 0:
            mesh.materials.pop(index=slot_index)
            mesh.polygons.foreach_set("material_index", old_indices)
        if material is not None:
            bpy.data.materials.remove(material)
        if layer is not None:
            mesh.uv_layers.remove(mesh.uv_layers[uv_name])
        if created_image is not None:
            bpy.data.images.remove(created_image)
        raise
    return AppliedTexture(created_image, material, uv_name, slot_index, unwrapped)
