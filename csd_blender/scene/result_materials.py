"""Result materials: a copy of a slot's material whose Base Color is driven by the result image.

Every other setting of the copied material stays (roughness, normal maps, node groups, ...). The copy keeps a
reference to the material it was made from (`SOURCE_KEY`), so the next result copies the user's material again
instead of a copy of a copy, and the user's material stays in a saved file while a result uses it.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SOURCE_KEY = "csd_source"      # ID property on a result material: the user's material it copies (or absent)
RESULT_KEY = "csd_result"      # string property on result materials and images: the result's id
TEX_NODE = "CSD Texture"
UV_NODE = "CSD UV Map"


def is_result_material(mat) -> bool:
    """Whether `mat` was made by a CSD result."""
    return mat is not None and RESULT_KEY in mat


def source_of(mat):
    """The user's material behind a slot's material: itself, or the one a result material copies (or None)."""
    if is_result_material(mat):
        return mat.get(SOURCE_KEY)
    return mat


def _ensure_nodes(mat) -> None:
    if mat.node_tree is None:              # Blender < 5.0 creates materials without nodes
        mat.use_nodes = True


def _upstream(node, seen: set) -> list:
    """Nodes feeding `node`, depth first (including node groups' outer nodes, not their insides)."""
    out = []
    for socket in node.inputs:
        for link in socket.links:
            src = link.from_node
            if src.name not in seen:
                seen.add(src.name)
                out.append(src)
                out.extend(_upstream(src, seen))
    return out


def principled_targets(node_tree) -> list:
    """The Principled BSDF nodes that feed the active material output (all of them if none does)."""
    output = next((n for n in node_tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output), None)
    if output is None:
        output = next((n for n in node_tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
    found = []
    if output is not None:
        found = [n for n in _upstream(output, {output.name}) if n.type == "BSDF_PRINCIPLED"]
    return found or [n for n in node_tree.nodes if n.type == "BSDF_PRINCIPLED"]


def drive_base_color(mat, image, uv_name: str) -> None:
    """Make the result image (through UV map `uv_name`) the Base Color of `mat`'s Principled BSDFs.

    A material without one gets a new Principled BSDF on its output.

    Args:
        mat: the material to change (a result copy, never the user's material).
        image: the result bpy Image.
        uv_name: the UV map the texture was made for.
    """
    _ensure_nodes(mat)
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    targets = principled_targets(tree)
    if not targets:
        log.info("material %r has no Principled BSDF; the result adds one on its output", mat.name)
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or \
            nodes.new("ShaderNodeOutputMaterial")
        bsdf.location = (output.location.x - 300, output.location.y)
        links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
        targets = [bsdf]
    tex = nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = TEX_NODE
    tex.image = image
    left = min(t.location.x for t in targets)
    tex.location = (left - 400, targets[0].location.y)
    uv = nodes.new("ShaderNodeUVMap")
    uv.name = uv.label = UV_NODE
    uv.uv_map = uv_name
    uv.location = (tex.location.x - 250, tex.location.y - 100)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    for bsdf in targets:
        for link in list(bsdf.inputs["Base Color"].links):
            links.remove(link)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])


def result_material(source, name: str, image, uv_name: str, result_id: str):
    """A new material for one slot: a copy of `source` (or a plain new one when None) driven by `image`.

    Args:
        source: the user's material of the slot, or None for an empty slot.
        name: name of the new material.
        image: the result image.
        uv_name: the UV map the texture was made for.
        result_id: stored under RESULT_KEY.
    """
    import bpy

    if source is None:
        mat = bpy.data.materials.new(name)
    else:
        mat = source.copy()
        mat.name = name
        for key in (RESULT_KEY, SOURCE_KEY):
            if key in mat:
                del mat[key]
    try:
        drive_base_color(mat, image, uv_name)
        mat[RESULT_KEY] = result_id
        if source is not None:
            mat[SOURCE_KEY] = source
    except Exception:
        bpy.data.materials.remove(mat)
        raise
    return mat
