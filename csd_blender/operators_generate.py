"""Text to mesh in the scene: the operator (a ModalJobOperator) and the new object it adds at the 3D cursor.

The result (vertices (V,3), faces (F,3), per-corner uvs (F,3,2), texture (S,S,3)) becomes one new mesh object
with a "UVMap" layer, linked to the active collection at the 3D cursor, selected and active; its material and
packed image come from the shared result handling (apply_result.apply_texture), so it has a Results entry like
a textured object. If anything fails while applying, the object and its mesh are removed again.
"""

from __future__ import annotations

import logging

import bpy
import numpy as np

from . import apply_result, convert, job_params, preferences
from .generate_props import generate_params
from .job_operator import JobRequest, ModalJobOperator
from .operators_jobs import store_options

log = logging.getLogger(__name__)


def generate_block_reason(context) -> str:
    """Why Text to Mesh cannot start now ("" when it can)."""
    from .engine_session import SESSION

    if SESSION.job is not None:
        return "A job is running"
    if not context.scene.csd_generate.prompt.strip():
        return "Enter a prompt"
    if context.mode != "OBJECT":
        return "Switch to Object Mode"
    return ""


def new_mesh_object(
    context, name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, location
) -> bpy.types.Object:
    """A mesh object from arrays, linked to the active collection at `location`.

    Args:
        name: object and mesh name.
        vertices: (V, 3) float32 object-space positions (Z up, metres).
        faces: (F, 3) int32 triangles.
        uvs: (F, 3, 2) float32 per-corner UVs (written to a "UVMap" layer in loop order).
        location: world position of the object's origin (the 3D cursor).
    """
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
    """Remove an object this module created, with its mesh."""
    mesh = obj.data
    bpy.data.objects.remove(obj, do_unlink=True)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)


class CSD_OT_text_to_mesh(ModalJobOperator, bpy.types.Operator):
    """Make a new textured object at the 3D cursor from the prompt (coarse NeRF, then mesh refinement)"""

    bl_idname = "csd.text_to_mesh"
    bl_label = "Generate Mesh"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "Text to mesh"

    block_reason = staticmethod(generate_block_reason)

    def prepare(self, context) -> list[JobRequest]:
        self.refuse_if_blocked(context)
        params = generate_params(
            context.scene.csd_generate,
            default_model=preferences.get_preferences().default_model,
            model=context.scene.csd.model,
            progress_every=int(context.scene.csd.progress_every),
        )
        return [JobRequest("generate", params, {}, target="", data=tuple(context.scene.cursor.location))]

    def apply(self, context, request: JobRequest, result) -> str:
        a = result.arrays
        for key in ("vertices", "faces", "uvs", "texture"):
            if key not in a:
                raise ValueError(f"the result has no {key}")
        params = request.params
        name = "CSD " + (params.prompt[:40] or "mesh")
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        obj = new_mesh_object(
            context, name, a["vertices"], a["faces"], np.asarray(a["uvs"], np.float32), request.data
        )
        try:
            context.view_layer.update()
            mesh_info = convert.mesh_arrays(obj, context.evaluated_depsgraph_get())
            meta = {"unwrapped": False, "params": result.meta.get("params", {})}
            applied = apply_result.apply_texture(
                obj,
                mesh_info,
                np.asarray(a["texture"], np.float32),
                None,
                meta,
                job_params.dumps_params(params),
                name=name,
                options=store_options(context.scene.csd),
                task="generate",
            )
        except Exception:
            remove_object(obj)
            raise
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        size = f"{applied.image.size[0]}x{applied.image.size[1]}"
        return f"Added {obj.name!r}: {len(obj.data.polygons)} faces, texture {size}"


CLASSES = (CSD_OT_text_to_mesh,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
