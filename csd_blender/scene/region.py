"""Region jobs: the faces an Edit Mode selection, a face set or a vertex group names, as the per-triangle
`face_mask` the engine takes (csd_blender/protocol/params/region.py). Functions take Blender data as arguments."""
from __future__ import annotations

import numpy as np

FACE_SET_ATTRIBUTE = ".sculpt_face_set"


class RegionError(ValueError):
    """The region cannot be sent (the message says why and what to do)."""


def loop_polygons(mesh) -> np.ndarray:
    """(L,) int64: the polygon of every loop of a bpy Mesh."""
    n = len(mesh.polygons)
    starts, totals = np.empty(n, np.int64), np.empty(n, np.int64)
    mesh.polygons.foreach_get("loop_start", starts)
    mesh.polygons.foreach_get("loop_total", totals)
    return np.repeat(np.arange(n, dtype=np.int64), totals)


def polygon_region(obj, source: str, vertex_group: str = "", face_set: int = 1) -> np.ndarray:
    """(P,) bool over the object's own polygons.

    Args:
        obj: a mesh object (in Object Mode: an Edit Mode selection is synced with `update_from_editmode` first).
        source: "SELECTION", "FACE_SET" or "VERTEX_GROUP".
        vertex_group: the group's name (VERTEX_GROUP).
        face_set: the face set id (FACE_SET).
    """
    mesh = obj.data
    n = len(mesh.polygons)
    if source == "SELECTION":
        selected = np.zeros(n, bool)
        mesh.polygons.foreach_get("select", selected)
        return selected
    if source == "FACE_SET":
        attribute = mesh.attributes.get(FACE_SET_ATTRIBUTE)
        if attribute is None:
            raise RegionError(f"{obj.name!r} has no face sets (Sculpt Mode › Face Sets); choose Selected Faces")
        ids = np.zeros(n, np.int32)
        attribute.data.foreach_get("value", ids)
        return ids == face_set
    group = obj.vertex_groups.get(vertex_group)
    if group is None:
        raise RegionError(f"{obj.name!r} has no vertex group {vertex_group!r}")
    weight = np.zeros(len(mesh.vertices), np.float32)
    for v in mesh.vertices:
        for g in v.groups:
            if g.group == group.index:
                weight[v.index] = g.weight
    loops = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("vertex_index", loops)
    inside = weight[loops] >= 0.5
    return np.logical_and.reduceat(inside, _starts(mesh)) if n else np.zeros(0, bool)


def _starts(mesh) -> np.ndarray:
    starts = np.empty(len(mesh.polygons), np.int64)
    mesh.polygons.foreach_get("loop_start", starts)
    return starts


def face_mask(obj, mesh_info, source: str, vertex_group: str = "", face_set: int = 1) -> np.ndarray:
    """(F,) uint8 for the triangles of `mesh_info` (scene.mesh.MeshArrays): 1 where the triangle's polygon is in
    the region.

    Raises:
        RegionError: modifiers change the faces (the region names the object's own faces), or it selects none.
    """
    if not mesh_info.maps_to_original:
        raise RegionError(f"a region names {obj.name!r}'s own faces, but its modifiers change them "
                          f"({', '.join(m.name for m in obj.modifiers) or 'evaluated mesh differs'}); apply or "
                          "disable them, or turn Selected Faces Only off")
    polygons = polygon_region(obj, source, vertex_group, face_set)
    mask = polygons[loop_polygons(obj.data)[np.asarray(mesh_info.tri_loops)[:, 0]]].astype(np.uint8)
    if not mask.any():
        what = {"SELECTION": "no face is selected (Edit Mode)", "FACE_SET": f"face set {face_set} has no face",
                "VERTEX_GROUP": f"vertex group {vertex_group!r} covers no whole face"}[source]
        raise RegionError(f"Selected Faces Only: {what} on {obj.name!r}")
    return mask
