"""Edit selected object (paper Eq. 11): send the object's base-colour texture and UVs, apply the edited texture.

The operator reads the active object's active material: the image texture feeding its Principled BSDF's Base
Color, and the mesh's active UV map. The engine returns a new texture of the same size on the same UVs; it goes
into a NEW image and copies of the slot materials through the shared result handling (apply_result), so the
original image and material stay in the file untouched, and one undo restores the previous assignment.
"""
from __future__ import annotations

import dataclasses
import logging

import bpy
import numpy as np

from ..link.outgoing import LIMITS_1_0
from ..link.session import SESSION
from ..props import job_params, prefs
from ..protocol.params.edit import texture_refusal, texture_wire_dtype
from ..scene import apply_result
from ..scene.images import array_from_image
from ..scene.mesh import mesh_arrays, mesh_object_problem, new_mesh_object, remove_object
from ..scene.region import RegionError, face_mask
from ..scene.result_materials import principled_targets
from .job_operator import JobRefused, JobRequest, ModalJobOperator

log = logging.getLogger(__name__)

NEEDS_TEXTURE = "use Generate texture from text first"


def base_color_image(obj):
    """The image of the Image Texture node feeding the Base Color of the active material's Principled BSDF.

    Args:
        obj: a mesh object.

    Returns:
        (image, material) or (None, material or None) when there is no such image.
    """
    mat = obj.active_material
    if mat is None or mat.node_tree is None:
        return None, mat
    for bsdf in principled_targets(mat.node_tree):
        todo = [link.from_node for link in bsdf.inputs["Base Color"].links]
        seen: set = set()
        while todo:
            node = todo.pop(0)
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.type == "TEX_IMAGE" and node.image is not None:
                return node.image, mat
            todo += [link.from_node for socket in node.inputs for link in socket.links]
    return None, mat


def edit_block_reason(context) -> str:
    """Why Edit Selected Object cannot start now ("" when it can)."""
    obj = context.active_object
    settings = context.scene.csd_edit
    if SESSION.job is not None:
        return "A job is running"
    if obj is None:
        return "Select a textured mesh object"
    problem = mesh_object_problem(obj)
    if problem:
        return problem
    if context.mode != "OBJECT" and not (context.mode == "EDIT_MESH" and settings.region.enabled):
        return "Switch to Object Mode (or tick Selected Faces Only to edit the faces selected in Edit Mode)"
    if not settings.target_prompt.strip():
        return "Enter the target prompt (what the object should become)"
    if not settings.edit_prompt.strip():
        return "Enter the edit prompt (what the object is now)"
    if not SESSION.connected:
        return "Start the engine first (Engine panel)"
    return ""


def texture_problem(obj) -> str:
    """What stops `obj` from being edited ("" when nothing): no faces, no UV map, no base-colour image, an empty
    image."""
    problem = mesh_object_problem(obj)
    if problem:
        return problem
    if not obj.data.uv_layers:
        return f"{obj.name!r} has no UV map, so its texture cannot be edited; {NEEDS_TEXTURE}"
    image, mat = base_color_image(obj)
    if image is None:
        where = f"material {mat.name!r}" if mat is not None else "no material"
        return (f"{obj.name!r} has no image texture on its Principled BSDF Base Color ({where}); "
                f"{NEEDS_TEXTURE}")
    if image.size[0] == 0 or image.size[1] == 0 or not image.has_data and not _loads(image):
        return f"the image {image.name!r} has no pixels (is its file missing?)"
    return ""


def _loads(image) -> bool:
    try:
        image.pixels[0]  # loads the pixels of a file image
    except (IndexError, RuntimeError):
        return False
    return image.has_data


def edit_texture(image) -> np.ndarray:
    """The image's pixels as the engine takes them: (H, W, 4) top row first, uint8 for an 8-bit image (what it
    holds, exactly: a quarter of float32's size), float32 for a float one (the client sends it as float16 to a 1.1
    engine). Refused at once, naming the limit, when it is too large for the engine (JobRefused)."""
    w, h = image.size
    client = SESSION.client
    minor = client.minor if client is not None else 0
    limits = (client.hello.limits if client is not None and client.hello is not None else None) or {}
    why = texture_refusal(h, w, 4, texture_wire_dtype(image.is_float, minor),
                          int(limits.get("max_buffer_bytes", LIMITS_1_0.max_buffer_bytes)))
    if why:
        raise JobRefused(f"{image.name!r}: {why}")
    pixels = array_from_image(image)
    if image.is_float:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    return np.round(pixels * 255.0).astype(np.uint8)


class CSD_OT_edit_object(ModalJobOperator, bpy.types.Operator):
    """Change the active object's texture from text: towards the target prompt, away from the edit prompt
    (the result goes into a new image and copies of its materials; the originals stay in the file)"""

    bl_idname = "csd.edit_object"
    bl_label = "Edit Object"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "Edit"

    block_reason = staticmethod(edit_block_reason)

    def prepare(self, context) -> list[JobRequest]:
        self.refuse_if_blocked(context)
        obj = context.active_object
        if context.mode == "EDIT_MESH":      # Selected Faces Only from Edit Mode: take the selection, then edit
            obj.update_from_editmode()
            bpy.ops.object.mode_set(mode="OBJECT")
        problem = texture_problem(obj)
        if problem:
            raise JobRefused(problem)
        image, _ = base_color_image(obj)
        uv_name = obj.data.uv_layers.active.name
        params = job_params.edit_params(context.scene.csd_edit, default_model=prefs.default_model(),
                                        model=context.scene.csd.model,
                                        progress_every=int(context.scene.csd.progress_every))
        mesh_info = mesh_arrays(obj, context.evaluated_depsgraph_get(), uv_name=uv_name)
        if mesh_info.faces.shape[0] == 0:
            raise JobRefused(f"{obj.name!r} has no faces")
        texture = edit_texture(image)
        arrays = {"vertices": mesh_info.vertices, "faces": mesh_info.faces, "uvs": mesh_info.uvs,
                  "texture": texture}
        region = context.scene.csd_edit.region
        if region.enabled:
            if context.scene.csd_edit.geometry:
                raise JobRefused("Selected Faces Only keeps the rest of the texture; Edit Geometry moves the whole "
                                 "surface: turn one of them off")
            try:
                arrays["face_mask"] = face_mask(obj, mesh_info, region.source, region.vertex_group, region.face_set)
            except RegionError as exc:
                raise JobRefused(str(exc)) from None
        log.info("edit: %r with image %r (%dx%d) and UV map %r", obj.name, image.name, *image.size, uv_name)
        return [JobRequest("edit", params, arrays, target=obj.name, data=mesh_info)]

    def apply(self, context, request: JobRequest, result) -> str:
        obj = bpy.data.objects.get(request.target)
        if obj is None:
            raise ValueError(f"{request.target!r} was deleted while the job ran")
        texture = result.arrays.get("texture")
        if texture is None:
            raise ValueError("the result has no texture")
        sent = request.arrays["texture"].shape
        if texture.shape[:2] != sent[:2]:
            raise ValueError(f"the edited texture is {texture.shape[1]}x{texture.shape[0]}, the original "
                             f"{sent[1]}x{sent[0]}")
        meta = {"unwrapped": False, "params": result.meta.get("params", {})}
        # keep earlier results: the texture being edited may itself be a CSD result, and it must stay
        options = dataclasses.replace(apply_result.StoreOptions.from_settings(context.scene.csd), keep_previous=True)
        params_json = job_params.dumps_params(request.params)
        stats = result.meta.get("stats", {})
        if result.meta.get("geometry"):
            return self._apply_new_object(context, obj, result, texture, meta, params_json, options, stats)
        applied = apply_result.apply_texture(obj, request.data, np.asarray(texture, np.float32), None, meta,
                                             params_json, name="CSD Edit", options=options, task="edit")
        return (f"Edited {obj.name!r}: new image {applied.image.name!r} "
                f"({applied.image.size[0]}x{applied.image.size[1]}), reconstruction "
                f"{stats.get('fit_psnr_db', float('nan')):.1f} dB")


    @staticmethod
    def _apply_new_object(context, obj, result, texture, meta, params_json, options, stats) -> str:
        """A geometry edit: the new surface (world space) becomes a new object beside the original, which stays."""
        a = result.arrays
        for key in ("vertices", "faces", "uvs"):
            if key not in a:
                raise ValueError(f"the geometry result has no {key}")
        new = new_mesh_object(context, f"{obj.name} (edited)", a["vertices"], a["faces"],
                              np.asarray(a["uvs"], np.float32), (0.0, 0.0, 0.0))
        try:
            context.view_layer.update()
            mesh_info = mesh_arrays(new, context.evaluated_depsgraph_get())
            applied = apply_result.apply_texture(new, mesh_info, np.asarray(texture, np.float32), None, meta,
                                                 params_json, name="CSD Edit", options=options, task="edit")
        except Exception:
            remove_object(new)
            raise
        for other in context.selected_objects:
            other.select_set(False)
        new.select_set(True)
        context.view_layer.objects.active = new
        return (f"Added {new.name!r} ({len(new.data.polygons)} faces, image {applied.image.name!r}); "
                f"{obj.name!r} is unchanged; reconstruction {stats.get('fit_psnr_db', float('nan')):.1f} dB")


CLASSES = (CSD_OT_edit_object,)
