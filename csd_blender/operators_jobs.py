"""Job operators: texture from text (modal, timer-polled), cancel, camera rig, reuse stored settings.

The texture operator submits the job, then polls the engine client on a window-manager TIMER (no threads,
no bpy off the main thread). In background mode it runs the same tick in a loop until the job ends, so
scripts and tests get a finished result from one operator call. Nothing is created in the file before the
result is complete: a failed or cancelled job leaves the data as it was.
"""
from __future__ import annotations

import logging
import math
import time

import bpy
import numpy as np

from . import apply_result, convert, job_params, preferences
from .engine_session import SESSION, JobState
from .operators_engine import redraw_ui, start_idle_heartbeat
from .preview import LivePreview
from .protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

TIMER_S = 0.1
CANCEL_GRACE_S = 15.0      # wait this long for the engine to confirm a cancel before giving up on it
RIG_COLLECTION = "CSD Camera Rig"


def run_synchronously() -> bool:
    """Background Blender (no event loop) runs jobs to completion inside the operator call."""
    return bool(bpy.app.background)


def rig_cameras(settings) -> list:
    """The perspective cameras of the chosen camera collection (sorted by name)."""
    coll = settings.camera_collection
    if coll is None:
        return []
    return sorted((o for o in coll.all_objects if o.type == "CAMERA" and o.data.type == "PERSP"),
                  key=lambda o: o.name)


def texture_block_reason(context) -> str:
    """Why Generate Texture cannot run now ("" when it can)."""
    obj = context.active_object
    if obj is None:
        return "Select a mesh object to texture"
    if obj.type != "MESH":
        return f"The active object {obj.name!r} is a {obj.type.lower()}, not a mesh"
    if obj.mode == "EDIT":
        return "Switch to Object Mode first (edits in Edit Mode are not in the mesh data yet)"
    settings = context.scene.csd
    if not settings.prompt.strip():
        return "Enter a prompt"
    if SESSION.job is not None:
        return "A job is already running"
    if SESSION.starting:
        return "The engine is still starting"
    if not SESSION.connected:
        return "Start the engine first (Engine panel)"
    if settings.camera_mode == "COLLECTION" and not rig_cameras(settings):
        return "Choose a camera collection with perspective cameras, or use the automatic orbit"
    return ""


class CSD_OT_texture_from_text(bpy.types.Operator):
    """Generate a UV texture for the active mesh from the prompt (the result goes into a new material)"""

    bl_idname = "csd.texture_from_text"
    bl_label = "Generate Texture"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        reason = texture_block_reason(context)
        if reason:
            cls.poll_message_set(reason)
            return False
        return True

    # ------------------------------------------------------------------------------------------ submit
    def execute(self, context):
        reason = texture_block_reason(context)
        if reason:
            self.report({"ERROR"}, reason)
            return {"CANCELLED"}
        settings = context.scene.csd
        obj = context.active_object
        try:
            default_model = preferences.get_preferences().default_model
            params = job_params.texture_params(settings, default_model=default_model)
            mesh_info = convert.mesh_arrays(obj, context.evaluated_depsgraph_get())
            if mesh_info.faces.shape[0] == 0:
                raise ValueError(f"{obj.name!r} has no faces")
            if mesh_info.uvs is None and not mesh_info.maps_to_original:
                raise ValueError(f"{obj.name!r} has no UV map and modifiers that change its topology; add "
                                 "a UV map or apply the modifiers so the engine's unwrap can be written back")
            arrays = {"vertices": mesh_info.vertices, "faces": mesh_info.faces}
            if mesh_info.uvs is not None:
                arrays["uvs"] = mesh_info.uvs
            if settings.camera_mode == "COLLECTION":
                cameras = rig_cameras(settings)
                arrays["c2w"], arrays["intrinsics"] = convert.camera_arrays(cameras, context.scene)
            job_id = SESSION.client.submit("texture", params, arrays)
        except (ProtocolError, ValueError) as exc:
            self.report({"ERROR"}, str(exc.message if isinstance(exc, ProtocolError) else exc))
            return {"CANCELLED"}
        self._params_json = job_params.dumps_params(params)
        self._prompt = params.prompt
        self._mesh_info = mesh_info
        self._object_name = obj.name
        self._preview = LivePreview(job_id)
        self._timer = None
        SESSION.job = JobState(job_id, "texture", obj.name)
        log.info("submitted texture job %s for %r (%d triangles)", job_id, obj.name, mesh_info.faces.shape[0])

        if run_synchronously():
            while True:
                status = self._tick(context)
                if status is not None:
                    return status
                time.sleep(0.02)
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, "CSD: submitted")
        redraw_ui()
        return {"RUNNING_MODAL"}

    # ------------------------------------------------------------------------------------------ modal
    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            if SESSION.job is not None:
                SESSION.job.cancel_requested = True
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":                 # ours or another timer: polling is cheap and non-blocking
            status = self._tick(context)
            if status is not None:
                return status
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator (file load, window closed): stop the job, leave nothing behind."""
        job = SESSION.job
        if job is not None and SESSION.client is not None and SESSION.client.alive:
            try:
                SESSION.client.cancel(job.job_id)
            except ProtocolError:
                pass
        self._cleanup(context, keep_preview=False)

    # ------------------------------------------------------------------------------------------ one tick
    def _tick(self, context):
        """Process what arrived; return None to keep going or the operator's final status."""
        job = SESSION.job
        try:
            if job is None:                       # the engine was stopped from the panel
                return self._end(context, {"CANCELLED"}, "WARNING",
                                 "Texture job stopped: the engine was stopped")
            client = SESSION.client
            if client is None or not client.alive:
                SESSION.mark_dead(SESSION.last_error or "the engine connection was closed")
                return self._end(context, {"CANCELLED"}, "ERROR", f"Texture job failed: {SESSION.last_error}")
            if job.cancel_requested and job.cancelling_since is None:
                client.cancel(job.job_id)
                job.cancelling_since = time.monotonic()
                self._status(context, "CSD: cancelling...")
            if job.cancelling_since is not None and time.monotonic() - job.cancelling_since > CANCEL_GRACE_S:
                return self._end(context, {"CANCELLED"}, "WARNING",
                                 "Texture job cancelled (the engine did not confirm in time)")
            for event in client.poll():
                status = self._handle(context, job, event)
                if status is not None:
                    return status
        except Exception as exc:
            log.exception("texture job %s failed in Blender", job.job_id if job else "?")
            return self._end(context, {"CANCELLED"}, "ERROR", f"Texture job failed: {exc}")
        return None

    def _handle(self, context, job: JobState, event):
        from .client import EngineDied, JobResult
        from .protocol.messages import Accepted, Cancelled, ErrorReply, Progress

        if isinstance(event, EngineDied):
            SESSION.mark_dead(event.reason)
            return self._end(context, {"CANCELLED"}, "ERROR",
                             f"Texture job failed: the engine died ({event.reason}); restart it from the "
                             "Engine panel")
        if getattr(event, "job_id", None) != job.job_id:
            log.debug("ignoring %s of another job", type(event).__name__)
            return None
        if isinstance(event, Accepted):
            job.stage = "queued" if event.queue_position else "starting"
        elif isinstance(event, Progress):
            job.stage, job.step, job.total = event.stage, event.step, event.total
            job.loss, job.elapsed_s, job.eta_s = event.loss, event.elapsed_s, event.eta_s
            if event.preview_png:
                try:
                    self._preview.update(event.preview_png)
                    job.previews += 1
                    job.preview_name = self._preview.name
                except (RuntimeError, OSError) as exc:
                    log.warning("could not show the preview: %s", exc)
            self._status(context, f"CSD {job.task}: {job.text()}")
            redraw_ui()
        elif isinstance(event, Cancelled):
            return self._end(context, {"CANCELLED"}, "WARNING", "Texture job cancelled")
        elif isinstance(event, ErrorReply):
            if event.code == ErrorCode.CANCELLED.value:
                return self._end(context, {"CANCELLED"}, "WARNING", "Texture job cancelled")
            oom = event.code == ErrorCode.OUT_OF_MEMORY.value
            hint = " (lower the texture size or quality)" if oom else ""
            if event.traceback:
                log.error("engine traceback for job %s:\n%s", job.job_id, event.traceback)
            return self._end(context, {"CANCELLED"}, "ERROR",
                             f"Texture job failed [{event.code}]: {event.message}{hint}")
        elif isinstance(event, JobResult):
            if job.cancel_requested:
                return self._end(context, {"CANCELLED"}, "WARNING", "Texture job cancelled")
            return self._apply(context, event)
        return None

    def _apply(self, context, result):
        obj = bpy.data.objects.get(self._object_name)
        if obj is None or obj.type != "MESH":
            return self._end(context, {"CANCELLED"}, "ERROR",
                             f"Texture job finished, but the object {self._object_name!r} is gone")
        texture = result.arrays.get("texture")
        if texture is None:
            return self._end(context, {"CANCELLED"}, "ERROR", "Texture job result has no texture")
        uvs = result.arrays.get("uvs")
        if obj.mode == "EDIT":                    # entered while the job ran: edit-mode data would win later
            with context.temp_override(active_object=obj, object=obj, selected_objects=[obj]):
                bpy.ops.object.mode_set(mode="OBJECT")
        name = f"CSD {self._prompt[:40]}"
        try:
            applied = apply_result.apply_texture(obj, self._mesh_info, np.asarray(texture, np.float32),
                                                 None if uvs is None else np.asarray(uvs, np.float32),
                                                 result.meta, self._params_json, name=name)
        except ValueError as exc:
            return self._end(context, {"CANCELLED"}, "ERROR", f"Texture result could not be applied: {exc}")
        size = f"{applied.image.size[0]}x{applied.image.size[1]}"
        return self._end(context, {"FINISHED"}, "INFO",
                         f"Texture {size} applied to {obj.name!r} as material {applied.material.name!r}",
                         keep_preview=True)

    # ------------------------------------------------------------------------------------------ ending
    def _end(self, context, status: set, level: str, message: str, keep_preview: bool = False) -> set:
        self._cleanup(context, keep_preview)
        self.report({level}, message)
        log.log(logging.ERROR if level == "ERROR" else logging.INFO, message)
        if SESSION.connected:
            start_idle_heartbeat()
        return status

    def _cleanup(self, context, keep_preview: bool) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if keep_preview:
            self._preview.keep()
        else:
            self._preview.discard()
        SESSION.job = None
        self._status(context, None)
        redraw_ui()

    @staticmethod
    def _status(context, text: str | None) -> None:
        if bpy.app.background:
            return
        workspace = context.workspace
        if workspace is not None:
            workspace.status_text_set(text)


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


CLASSES = (CSD_OT_texture_from_text, CSD_OT_cancel, CSD_OT_add_camera_rig, CSD_OT_reuse_settings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
