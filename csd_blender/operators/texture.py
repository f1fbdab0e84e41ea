"""Texture operators: Generate Texture (active mesh), Texture Selected Objects, Add Camera Rig.

The texture operators are job_operator.ModalJobOperator: the base submits, polls the engine on a timer (or
loops in background mode), shows progress and applies the result through apply_texture_result here. Nothing
is created in the file before the result is complete: a failed or cancelled job leaves the data as it was.
"""
from __future__ import annotations

import logging

import bpy
import numpy as np
from bpy.props import EnumProperty

from ..link.session import SESSION
from ..props import job_params, prefs
from ..protocol.params import MAX_PROMPT_CHARS
from ..scene import apply_result, cameras, mesh
from ..scene.images import array_from_image
from ..scene.region import RegionError, face_mask
from ..scene.uv_check import check_mesh_uvs, job_uv_source
from .edit import base_color_image
from .job_operator import JobRequest, ModalJobOperator
from .uv_choice import UV_ACTION_ITEMS, UVChoiceMixin

log = logging.getLogger(__name__)


def settings_block_reason(settings) -> str:
    """Why the job settings cannot make a job ("" when they can): prompt limits and texture storage."""
    for label, text in (("prompt", settings.prompt), ("negative prompt", settings.negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            return f"The {label} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}: shorten it"
    if settings.texture_storage == "FILE" and not bpy.data.filepath:
        return "Save the .blend first (textures are stored beside it), or choose Packed storage"
    return ""


def object_block_reason(obj) -> str:
    """Why `obj` cannot be textured ("" when it can)."""
    if obj is None:
        return "Select a mesh object to texture"
    problem = mesh.mesh_object_problem(obj)
    if problem:
        return problem
    if obj.mode == "EDIT":
        return "Switch to Object Mode first (edits in Edit Mode are not in the mesh data yet)"
    return ""


def job_block_reason(context) -> str:
    """Why no job can start now, whatever the object ("" when one can): settings, engine, camera rig."""
    settings = context.scene.csd
    reason = settings_block_reason(settings)
    if reason:
        return reason
    if SESSION.job is not None:
        return "A job is already running"
    if SESSION.starting:
        return "The engine is still starting"
    if not SESSION.connected:
        return "Start the engine first (Engine panel)"
    if settings.camera_mode == "COLLECTION" and not cameras.rig_cameras(settings):
        return "Choose a camera collection with perspective cameras, or use the automatic orbit"
    return ""


def texture_block_reason(context) -> str:
    """Why Generate Texture cannot run now ("" when it can)."""
    reason = object_block_reason(context.active_object)
    if reason:
        return reason
    if not context.scene.csd.prompt.strip():
        return "Enter a prompt"
    return job_block_reason(context)


def selected_meshes(context) -> list:
    """The selected mesh objects, the active one first, then by name."""
    active = context.active_object
    meshes = sorted((o for o in context.selected_objects if o.type == "MESH"), key=lambda o: o.name)
    if active in meshes:
        meshes.remove(active)
        meshes.insert(0, active)
    return meshes


def batch_block_reason(context) -> str:
    """Why Texture Selected Objects cannot run now ("" when it can)."""
    meshes = selected_meshes(context)
    if not meshes:
        return "Select one or more mesh objects"
    for obj in meshes:
        reason = object_block_reason(obj)
        if reason:
            return reason
        if len(obj.csd.prompt) > MAX_PROMPT_CHARS:
            return f"The prompt of {obj.name!r} is {len(obj.csd.prompt)} characters; the limit is " \
                   f"{MAX_PROMPT_CHARS}"
    if not context.scene.csd.prompt.strip():
        missing = [o.name for o in meshes if not o.csd.prompt.strip()]
        if missing:
            return f"Enter a prompt (shared) or give {missing[0]!r} its own prompt"
    return job_block_reason(context)


def texture_request(context, obj, prompt: str = "", uv_action: str = "ASK") -> JobRequest:
    """The texture job for one mesh object: current settings, its evaluated mesh, the rig when chosen.

    Args:
        obj: a mesh object in Object Mode.
        prompt: replaces the shared prompt when not empty.
        uv_action: "ASK" refuses UVs that do not fit one texture (scene.uv_check.UVProblem), "KEEP" uses them,
            "UNWRAP" lets the engine unwrap a new UV map.

    Raises:
        ValueError, ProtocolError: the settings or the mesh cannot make a job (the message says why).
    """
    settings = context.scene.csd
    params = job_params.texture_params(settings, default_model=prefs.default_model(), prompt=prompt)
    uv_name, unwrap = job_uv_source(settings, uv_action)
    mesh_info = mesh.mesh_arrays(obj, context.evaluated_depsgraph_get(), uv_name=uv_name, unwrap=unwrap)
    if mesh_info.faces.shape[0] == 0:
        raise ValueError(f"{obj.name!r} has no faces")
    if mesh_info.uvs is None and not mesh_info.maps_to_original:
        raise ValueError(f"{obj.name!r} has {'modifiers' if unwrap else 'no UV map and modifiers'} that change "
                         "its topology; the engine's unwrap cannot be written back: apply the modifiers"
                         + ("" if unwrap else " or add a UV map"))
    check_mesh_uvs(obj.name, mesh_info, uv_action)
    arrays = {"vertices": mesh_info.vertices, "faces": mesh_info.faces}
    if mesh_info.uvs is not None:
        arrays["uvs"] = mesh_info.uvs
    if settings.camera_mode == "COLLECTION":
        arrays["c2w"], arrays["intrinsics"] = cameras.camera_arrays(cameras.rig_cameras(settings), context.scene)
    if settings.region.enabled:
        arrays.update(region_arrays(obj, mesh_info, settings.region))
    return JobRequest("texture", params, arrays, target=obj.name, data=mesh_info)


def region_arrays(obj, mesh_info, region) -> dict:
    """`face_mask` of the region and, when the object has a base-colour image on the UVs sent, that texture (kept
    outside the region bit for bit; without one the result is transparent outside the region)."""
    try:
        out = {"face_mask": face_mask(obj, mesh_info, region.source, region.vertex_group, region.face_set)}
    except RegionError as exc:
        raise ValueError(str(exc)) from None
    image, _ = base_color_image(obj)
    if image is not None and mesh_info.uvs is not None:
        out["texture"] = np.ascontiguousarray(array_from_image(image), dtype=np.float32)
    return out


def apply_texture_result(context, request: JobRequest, result) -> str:
    """Apply one finished texture job to its object (the shared result handling); return the report line.

    Raises:
        ValueError: the object is gone or the result does not fit it (nothing is left behind).
    """
    obj = bpy.data.objects.get(request.target)
    if obj is None or obj.type != "MESH":
        raise ValueError(f"the object {request.target!r} is gone")
    texture = result.arrays.get("texture")
    if texture is None:
        raise ValueError("the result has no texture")
    uvs = result.arrays.get("uvs")
    if obj.mode == "EDIT":                    # entered while the job ran: edit-mode data would win later
        with context.temp_override(active_object=obj, object=obj, selected_objects=[obj]):
            bpy.ops.object.mode_set(mode="OBJECT")
    params = request.params
    applied = apply_result.apply_texture(obj, request.data, np.asarray(texture, np.float32),
                                         None if uvs is None else np.asarray(uvs, np.float32),
                                         result.meta, job_params.dumps_params(params),
                                         name=f"CSD {params.prompt[:40]}",
                                         options=apply_result.StoreOptions.from_settings(context.scene.csd))
    size = f"{applied.image.size[0]}x{applied.image.size[1]}"
    names = ", ".join(repr(m.name) for m in applied.materials)
    return f"Texture {size} applied to {obj.name!r} ({len(applied.materials)} material(s): {names})"


class CSD_OT_texture_from_text(UVChoiceMixin, ModalJobOperator, bpy.types.Operator):
    """Generate a UV texture for the active mesh from the prompt (the result goes into copies of its
    materials)"""

    bl_idname = "csd.texture_from_text"
    bl_label = "Generate Texture"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "Texture job"

    uv_action: EnumProperty(name="UVs", items=UV_ACTION_ITEMS, default="ASK", options={"SKIP_SAVE"})

    block_reason = staticmethod(texture_block_reason)

    def prepare(self, context) -> list[JobRequest]:
        self.refuse_if_blocked(context)
        return [texture_request(context, context.active_object, uv_action=self.uv_action)]

    def apply(self, context, request: JobRequest, result) -> str:
        return apply_texture_result(context, request, result)


class CSD_OT_texture_selected(UVChoiceMixin, ModalJobOperator, bpy.types.Operator):
    """Texture every selected mesh, one job after another (each with its own prompt, or the shared one); Esc
    stops the rest"""

    bl_idname = "csd.texture_selected"
    bl_label = "Texture Selected Objects"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "Texture job"

    uv_action: EnumProperty(name="UVs", items=UV_ACTION_ITEMS, default="ASK", options={"SKIP_SAVE"})

    def uv_targets(self, context) -> list:
        return selected_meshes(context)

    block_reason = staticmethod(batch_block_reason)

    def prepare(self, context) -> list[JobRequest]:
        self.refuse_if_blocked(context)
        others = sorted(o.name for o in context.selected_objects if o.type != "MESH")
        self.batch_note = (f"; {len(others)} selected object{'s' if len(others) > 1 else ''} skipped (not "
                           f"meshes): {', '.join(others[:5])}{' …' if len(others) > 5 else ''}") if others else ""
        return [texture_request(context, obj, prompt=obj.csd.prompt, uv_action=self.uv_action)
                for obj in selected_meshes(context)]

    def apply(self, context, request: JobRequest, result) -> str:
        return apply_texture_result(context, request, result)


class CSD_OT_add_camera_rig(bpy.types.Operator):
    """Add cameras on an orbit around the selection, in a new collection used as the camera rig"""

    bl_idname = "csd.add_camera_rig"
    bl_label = "Add Camera Rig"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if not [o for o in context.selected_objects if o.type != "CAMERA"]:
            cls.poll_message_set("Select the object to put the cameras around")
            return False
        return True

    def execute(self, context):
        settings = context.scene.csd
        targets = [o for o in context.selected_objects if o.type != "CAMERA"]
        coll, distance = cameras.add_camera_rig(context.scene, targets, count=settings.rig_cameras,
                                                elevation=settings.rig_elevation,
                                                distance_factor=settings.rig_distance, lens=settings.rig_lens)
        settings.camera_collection = coll
        settings.camera_mode = "COLLECTION"
        self.report({"INFO"},
                    f"Added {settings.rig_cameras} cameras at distance {distance:.2f} in {coll.name!r}")
        return {"FINISHED"}


CLASSES = (CSD_OT_texture_from_text, CSD_OT_texture_selected, CSD_OT_add_camera_rig)
