"""Text to mesh: the operator (a ModalJobOperator) that adds the result as a new object at the 3D cursor.

The result (vertices (V,3), faces (F,3), per-corner uvs (F,3,2), texture (S,S,3)) becomes one new mesh object
with a "UVMap" layer, linked to the active collection at the 3D cursor, selected and active; its material and
packed image come from the shared result handling (apply_result.apply_texture), so it has a Results entry like
a textured object. If anything fails while applying, the object and its mesh are removed again.
"""

from __future__ import annotations

import logging

import bpy
import numpy as np

from ..link.session import SESSION
from ..props import job_params, prefs
from ..scene import apply_result
from ..scene.mesh import mesh_arrays, new_mesh_object, remove_object, standing_on_origin
from .job_operator import JobRequest, ModalJobOperator

log = logging.getLogger(__name__)


def generate_block_reason(context) -> str:
    """Why Text to Mesh cannot start now ("" when it can)."""
    if SESSION.job is not None:
        return "A job is running"
    if not context.scene.csd_generate.prompt.strip():
        return "Enter a prompt"
    if context.mode != "OBJECT":
        return "Switch to Object Mode"
    return ""


class CSD_OT_text_to_mesh(ModalJobOperator, bpy.types.Operator):
    """Make a new textured object at the 3D cursor from the prompt (coarse NeRF, then mesh refinement)"""

    bl_idname = "csd.text_to_mesh"
    bl_label = "Generate Mesh"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "Text to mesh"

    block_reason = staticmethod(generate_block_reason)

    def prepare(self, context) -> list[JobRequest]:
        self.refuse_if_blocked(context)
        params = job_params.generate_params(
            context.scene.csd_generate,
            default_model=prefs.default_model(),
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
        obj = new_mesh_object(   # the origin at the base's centre, on the cursor: it stands on it
            context, name, standing_on_origin(a["vertices"]), a["faces"], np.asarray(a["uvs"], np.float32),
            request.data,
        )
        try:
            context.view_layer.update()
            mesh_info = mesh_arrays(obj, context.evaluated_depsgraph_get())
            meta = {"unwrapped": False, "params": result.meta.get("params", {})}
            applied = apply_result.apply_texture(
                obj,
                mesh_info,
                np.asarray(a["texture"], np.float32),
                None,
                meta,
                job_params.dumps_params(params),
                name=name,
                options=apply_result.StoreOptions.from_settings(context.scene.csd),
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
