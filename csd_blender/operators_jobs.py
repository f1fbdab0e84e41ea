"""Job operators: texture from text, cancel, camera rig, reuse stored settings.

The texture operator is a job_operator.ModalJobOperator: the base submits, polls the engine on a timer (or
loops in background mode), shows progress and applies the result through apply_texture_result here. Nothing
is created in the file before the result is complete: a failed or cancelled job leaves the data as it was.
"""
from __future__ import annotations

import logging
import math

import bpy
import numpy as np
from bpy.props import EnumProperty

from . import apply_result, convert, job_params, preferences
from .uv_choice import UV_ACTION_ITEMS, UVChoiceMixin, check_mesh_uvs, job_uv_source
from .engine_session import SESSION
from .job_operator import JobRefused, JobRequest, ModalJobOperator, run_synchronously  # noqa: F401
from .operators_engine import redraw_ui
from .protocol.errors import ProtocolError
from .protocol.params import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)

RIG_COLLECTION = "CSD Camera Rig"


def rig_cameras(settings) -> list:
    """The perspective cameras of the chosen camera collection (sorted by name)."""
    coll = settings.camera_collection
    if coll is None:
        return []
    return sorted((o for o in coll.all_objects if o.type == "CAMERA" and o.data.type == "PERSP"),
                  key=lambda o: o.name)


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
    if obj.type != "MESH":
        return f"The active object {obj.name!r} is a {obj.type.lower()}, not a mesh"
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
    if settings.camera_mode == "COLLECTION" and not rig_cameras(settings):
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
        uv_action: "ASK" refuses UVs that do not fit one texture (uv_choice.UVProblem), "KEEP" uses them,
            "UNWRAP" lets the engine unwrap a new UV map.

    Raises:
        ValueError, ProtocolError: the settings or the mesh cannot make a job (the message says why).
    """
    settings = context.scene.csd
    default_model = preferences.get_preferences().default_model
    params = job_params.texture_params(settings, default_model=default_model, prompt=prompt)
    uv_name, unwrap = job_uv_source(settings, uv_action)
    mesh_info = convert.mesh_arrays(obj, context.evaluated_depsgraph_get(), uv_name=uv_name, unwrap=unwrap)
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
        arrays["c2w"], arrays["intrinsics"] = convert.camera_arrays(rig_cameras(settings), context.scene)
    return JobRequest("texture", params, arrays, target=obj.name, data=mesh_info)


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
                                         options=store_options(context.scene.csd))
    size = f"{applied.image.size[0]}x{applied.image.size[1]}"
    names = ", ".join(repr(m.name) for m in applied.materials)
    return f"Texture {size} applied to {obj.name!r} ({len(applied.materials)} material(s): {names})"


def store_options(settings) -> apply_result.StoreOptions:
    """How results are kept, from Scene.csd."""
    return apply_result.StoreOptions(keep_previous=bool(settings.keep_previous_results),
                                     depth=int(settings.texture_depth),
                                     pack=settings.texture_storage == "PACK")


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
        return [texture_request(context, obj, prompt=obj.csd.prompt, uv_action=self.uv_action)
                for obj in selected_meshes(context)]

    def apply(self, context, request: JobRequest, result) -> str:
        return apply_texture_result(context, request, result)


class CSD_OT_cancel(bpy.types.Operator):
    """Stop the running job in the engine (nothing is added to the file)"""

    bl_idname = "csd.cancel"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if SESSION.job is None:
            cls.poll_message_set("No job is running")
            return False
        return True

    def execute(self, context):
        SESSION.job.cancel_requested = True
        redraw_ui()
        return {"FINISHED"}


def selection_bounds(objects) -> tuple[np.ndarray, float]:
    """World-space centre and bounding radius of the objects' bounding boxes.

    Args:
        objects: bpy objects (any type with a bound_box).
    """
    corners = []
    for obj in objects:
        m = np.array(obj.matrix_world, dtype=np.float64)
        box = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
        corners.append(box @ m[:3, :3].T + m[:3, 3])
    pts = np.concatenate(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    return centre, radius


def orbit_positions(centre: np.ndarray, distance: float, elevation: float, count: int) -> np.ndarray:
    """(count, 3) camera positions evenly spaced in azimuth on a circle at `elevation` (radians).

    Args:
        centre: (3,) orbit centre.
        distance: orbit radius.
        elevation: angle above the horizontal plane.
        count: number of cameras.
    """
    az = np.arange(count) * (2 * math.pi / count) - math.pi / 2     # first camera looks from -Y (front)
    ring = np.stack([np.cos(az) * math.cos(elevation), np.sin(az) * math.cos(elevation),
                     np.full(count, math.sin(elevation))], axis=1)
    return np.asarray(centre) + distance * ring


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
        from mathutils import Vector

        settings = context.scene.csd
        targets = [o for o in context.selected_objects if o.type != "CAMERA"]
        centre, radius = selection_bounds(targets)
        r = context.scene.render
        w, h = convert.render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
        sensor = 36.0
        # AUTO sensor fit: the sensor width spans the longer side; the object must fit the shorter one.
        half_fov = math.atan(sensor / 2 * min(w, h) / max(w, h) / settings.rig_lens)
        distance = max(settings.rig_distance * radius, radius / math.sin(half_fov) * 1.05)
        coll = bpy.data.collections.new(RIG_COLLECTION)
        context.scene.collection.children.link(coll)
        positions = orbit_positions(centre, distance, settings.rig_elevation, settings.rig_cameras)
        for i, pos in enumerate(positions):
            cam = bpy.data.cameras.new(f"CSD Camera {i + 1:02d}")
            cam.lens = settings.rig_lens
            cam.sensor_width = sensor
            cam.sensor_fit = "AUTO"
            cam.clip_start = max(1e-3, (distance - radius) * 0.1)
            cam.clip_end = distance + 4 * radius
            obj = bpy.data.objects.new(cam.name, cam)
            obj.location = Vector(pos)
            direction = Vector(centre) - Vector(pos)
            obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
            coll.objects.link(obj)
        settings.camera_collection = coll
        settings.camera_mode = "COLLECTION"
        self.report({"INFO"},
                    f"Added {settings.rig_cameras} cameras at distance {distance:.2f} in {coll.name!r}")
        return {"FINISHED"}


class CSD_OT_reuse_settings(bpy.types.Operator):
    """Copy the settings stored on the active object's CSD result back into the panel (same seed included)"""

    bl_idname = "csd.reuse_settings"
    bl_label = "Reuse Job Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or job_params.PARAMS_KEY not in obj:
            cls.poll_message_set("The active object has no CSD result")
            return False
        return True

    def execute(self, context):
        try:
            params = job_params.loads_params(context.active_object[job_params.PARAMS_KEY])
        except ProtocolError as exc:
            self.report({"ERROR"}, f"Stored settings are not usable: {exc.message}")
            return {"CANCELLED"}
        job_params.settings_from_params(context.scene.csd, params)
        self.report({"INFO"}, f"Settings of the job with seed {params.seed} restored")
        return {"FINISHED"}


CLASSES = (CSD_OT_texture_from_text, CSD_OT_texture_selected, CSD_OT_cancel, CSD_OT_add_camera_rig,
           CSD_OT_reuse_settings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
