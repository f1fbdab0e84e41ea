"""Meshes <-> wire arrays: the evaluated, triangulated mesh with its UVs, UVs written back, and a new mesh object
from a result.

`mesh_arrays` reads an object (world space, loop triangles, per-corner UVs of the chosen UV map); the UV scatter
and degenerate-triangle maths are plain numpy, tested without Blender. Functions that touch Blender data take it
as arguments and import bpy inside.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class MeshArrays:
    """A triangulated, evaluated mesh in world space, ready for the wire.

    Args:
        vertices: (V,3) float32 world positions.
        faces: (F,3) int32 vertex indices (Blender loop triangles).
        uvs: (F,3,2) float32 per-corner UVs of the active UV map, or None.
        uv_name: name of that UV map, or None.
        tri_loops: (F,3) int64 loop index of each triangle corner (to write UVs back).
        maps_to_original: the evaluated mesh has the same loops and triangles as the object's own mesh, so
            per-corner results can be written to it.
        dropped: degenerate triangles left out (faces, uvs and tri_loops cover the others).
        n_loops: loops of the object's own mesh when it was read (to notice edits made during a job).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None
    uv_name: str | None
    tri_loops: np.ndarray
    maps_to_original: bool
    dropped: int = 0
    n_loops: int = 0


def triangle_loops(mesh) -> np.ndarray:
    """(F,3) int64 loop indices of a mesh's loop triangles.

    Args:
        mesh: a bpy Mesh.
    """
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("loops", tris)
    return tris.reshape(-1, 3)


def corner_uvs(loop_uvs: np.ndarray, tri_loops: np.ndarray) -> np.ndarray:
    """Per-loop UVs (L,2) gathered to per-triangle-corner UVs (F,3,2) float32.

    Args:
        loop_uvs: (L,2) UVs of the mesh's loops.
        tri_loops: (F,3) loop index per triangle corner.
    """
    return np.asarray(loop_uvs, dtype=np.float32)[np.asarray(tri_loops)].astype(np.float32)


def loop_uvs_from_corners(uvs: np.ndarray, tri_loops: np.ndarray, n_loops: int) -> tuple[np.ndarray, int]:
    """Scatter per-corner UVs back to loops.

    A polygon split into several triangles shares loops between them; when the corners of one loop disagree
    (a UV seam cut through the polygon) the last triangle wins and the loop is counted as a conflict.

    Args:
        uvs: (F,3,2) per-corner UVs.
        tri_loops: (F,3) loop index per corner.
        n_loops: number of loops of the mesh.

    Returns:
        ((L,2) float32 UVs per loop, number of loops whose corners disagreed by more than 1e-5).
    """
    uvs = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
    loops = np.asarray(tri_loops, dtype=np.int64).reshape(-1)
    if uvs.shape[0] != loops.shape[0]:
        raise ValueError(f"uvs: {uvs.shape[0] // 3} triangles, but the mesh has {loops.shape[0] // 3}")
    out = np.zeros((n_loops, 2), dtype=np.float32)
    out[loops] = uvs
    conflicts = np.abs(out[loops] - uvs).max(axis=1) > 1e-5
    return out, int(np.unique(loops[conflicts]).size)


def degenerate_triangles(vertices: np.ndarray, faces: np.ndarray, rel_eps: float = 1e-12) -> np.ndarray:
    """(F,) bool: triangles with a repeated vertex or (near) zero area relative to the mesh extent.

    The engine drops zero-area triangles (area test at 1e-14 of the squared extent); dropping them here with a
    looser bound first keeps the returned per-corner arrays aligned with the triangles that were sent.

    Args:
        vertices: (V,3) positions.
        faces: (F,3) vertex indices.
        rel_eps: area threshold as a fraction of the squared largest extent.
    """
    faces = np.asarray(faces)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) == 0 or len(faces) == 0:
        return repeated
    tri = v[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    extent = float(np.ptp(v, axis=0).max())
    return repeated | (area2 <= extent * extent * rel_eps)


def render_uv_name(mesh) -> str | None:
    """The UV map a mesh renders with (its active render UV map; the first one when none is marked), or None.

    Args:
        mesh: a bpy Mesh.
    """
    layers = list(mesh.uv_layers)
    if not layers:
        return None
    return next((layer.name for layer in layers if layer.active_render), layers[0].name)


def mesh_object_problem(obj) -> str:
    """Why `obj` cannot be sent as a mesh ("" when it can): nothing active, not a mesh, a mesh without faces."""
    if obj is None:
        return "Select a mesh object"
    if obj.type != "MESH":
        return f"The active object {obj.name!r} is a {obj.type.lower()}, not a mesh"
    if len(obj.data.polygons) == 0 and not obj.modifiers:
        return (f"{obj.name!r} has no faces ({len(obj.data.vertices)} vertices, {len(obj.data.edges)} edges): "
                "there is no surface to texture; fill it (F in Edit Mode) or add faces first")
    return ""


def mesh_arrays(obj, depsgraph, uv_name: str | None = None, unwrap: bool = False) -> MeshArrays:
    """The evaluated (modifiers applied) mesh of `obj` in world space, triangulated.

    Args:
        obj: a bpy mesh object (the original, not the evaluated one).
        depsgraph: the evaluated depsgraph (context.evaluated_depsgraph_get()).
        uv_name: the UV map to send; None: the active render UV map (none when the mesh has no UV map).
        unwrap: send no UVs, so the engine unwraps the mesh into a new UV map.

    Raises:
        ValueError: `uv_name` is not a UV map of the object.
    """
    if obj.type != "MESH":
        raise ValueError(f"{obj.name!r} is a {obj.type.lower()}, not a mesh")
    # A script that changed the mesh (removed a UV map, moved vertices) without mesh.update() leaves the evaluated
    # mesh stale: tag it and re-evaluate, so what is sent (and the UV map the material will name) is what exists.
    obj.data.update()
    depsgraph.update()
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        n_vertices = len(mesh.vertices)
        co = np.empty(n_vertices * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(obj_eval.matrix_world, dtype=np.float64)
        world = co.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
        mesh.calc_loop_triangles()
        faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
        tri_loops = triangle_loops(mesh)
        uvs = None
        if uv_name is not None and mesh.uv_layers.get(uv_name) is None:
            raise ValueError(f"{obj.name!r} has no UV map {uv_name!r} (it has: "
                             f"{', '.join(layer.name for layer in mesh.uv_layers) or 'none'})")
        uv_name = None if unwrap else (uv_name or render_uv_name(mesh))
        if uv_name is not None:
            loop_uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            mesh.uv_layers[uv_name].data.foreach_get("uv", loop_uvs)
            uvs = corner_uvs(loop_uvs.reshape(-1, 2), tri_loops)
        n_loops = len(mesh.loops)
    finally:
        obj_eval.to_mesh_clear()
    original = obj.data
    maps = len(original.loops) == n_loops and len(original.vertices) == n_vertices
    if maps:
        orig_loops = triangle_loops(original)
        maps = orig_loops.shape == tri_loops.shape and bool(np.array_equal(orig_loops, tri_loops))
    vertices = world.astype(np.float32)
    faces = faces.reshape(-1, 3)
    keep = ~degenerate_triangles(vertices, faces)
    if not keep.all():
        log.info("%r: not sending %d degenerate triangles", obj.name, int((~keep).sum()))
        faces, tri_loops = faces[keep], tri_loops[keep]
        uvs = None if uvs is None else uvs[keep]
    return MeshArrays(vertices, np.ascontiguousarray(faces), uvs, uv_name, tri_loops, maps,
                      int((~keep).sum()), len(original.loops))


def write_uv_layer(mesh, name: str, uvs: np.ndarray, tri_loops: np.ndarray):
    """Add a UV map `name` to `mesh` filled from per-corner UVs; return the new layer.

    Args:
        mesh: the object's bpy Mesh (whose loop triangles match `tri_loops`).
        name: new UV map name (Blender may add a suffix if it exists).
        uvs: (F,3,2) per-corner UVs.
        tri_loops: (F,3) loop index of each corner.
    """
    loop_uvs, conflicts = loop_uvs_from_corners(uvs, tri_loops, len(mesh.loops))
    if conflicts:
        log.warning("%d loops of %r got different UVs from the triangles that share them (seam inside a "
                    "polygon); the last triangle's UVs were kept", conflicts, mesh.name)
    layer = mesh.uv_layers.new(name=name, do_init=False)
    if layer is None:
        raise ValueError(f"mesh {mesh.name!r} cannot take another UV map (Blender allows 8)")
    layer.data.foreach_set("uv", loop_uvs.ravel())
    mesh.update()
    return layer


def standing_on_origin(vertices: np.ndarray) -> np.ndarray:
    """`vertices` moved so that the origin is at the centre of their base: x and y centred, the lowest point at
    z = 0 (as Blender's Add operators place a new object's origin at the 3D cursor, a generated object stands on
    the cursor instead of sinking half under a floor-level one)."""
    v = np.asarray(vertices, np.float32)
    if len(v) == 0:
        return v
    lo, hi = v.min(0), v.max(0)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], np.float32)
    return (v - base).astype(np.float32)


def new_mesh_object(
    context, name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, location
):
    """A mesh object from arrays, linked to the active collection at `location`.

    Args:
        name: object and mesh name.
        vertices: (V, 3) float32 object-space positions (Z up, metres).
        faces: (F, 3) int32 triangles.
        uvs: (F, 3, 2) float32 per-corner UVs (written to a "UVMap" layer in loop order).
        location: world position of the object's origin (the 3D cursor).
    """
    import bpy

    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int32)
    if (
        faces.ndim != 2
        or faces.shape[1] != 3
        or len(faces) == 0
        or faces.min() < 0
        or faces.max() >= len(vertices)
    ):
        raise ValueError("the result's faces do not index its vertices")
    if uvs.shape != (len(faces), 3, 2):
        raise ValueError(f"the result's uvs are {uvs.shape}, expected ({len(faces)}, 3, 2)")
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", vertices.ravel())
        mesh.loops.add(3 * len(faces))
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(faces), 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", np.asarray(uvs, np.float32).reshape(-1))
        mesh.update()
        mesh.validate()
        obj = bpy.data.objects.new(name, mesh)
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    context.collection.objects.link(obj)
    obj.location = location
    return obj


def remove_object(obj) -> None:
    """Remove an object new_mesh_object() made, with its mesh."""
    import bpy

    mesh = obj.data
    bpy.data.objects.remove(obj, do_unlink=True)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
