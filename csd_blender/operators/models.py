"""The Models panel's operators (drawn in the add-on preferences): Refresh, Download, Cancel, Remove.

Each runs `python -m engine models …` in the engine's Python through link.models (a subprocess read by a worker
thread that touches no bpy); a persistent `bpy.app.timers` function redraws the preferences while it runs and, when
it ends, stores the outcome (the listing, a one-line report such as the gated-model instruction) for the draw code.
Background Blender (scripts, tests) runs each inside the operator call, as Set Up Engine does.
"""
from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty

from ..link.models import ModelsStatus, ModelsTask
from ..props.prefs import get_preferences
from ..protocol.models import RECOMMENDED, human_bytes
from .engine import redraw_ui

POLL_S = 0.25

_task: ModelsTask | None = None
_listing: dict = {}          # hub id -> the `model` event of the last `models list`
_report: list = [""]         # one line about the last action (the gated-model instruction, a freed size, …)


def running_task() -> ModelsTask | None:
    """The models command under way, if any (the preferences draw its progress bar)."""
    return _task


def listing() -> dict:
    """The last listing: hub id -> {"present", "bytes_on_disk", "estimate_bytes", "gated", "page", …}."""
    return _listing


def last_report() -> str:
    return _report[0]


def models_block_reason(prefs) -> str:
    """Why the Models buttons cannot run ("" when they can): they need the engine's Python on this machine."""
    if prefs.engine_mode != "LOCAL":
        return "Models are downloaded on the engine's machine: run `python -m engine models` there"
    python = bpy.path.abspath(prefs.python_path).strip()
    if not python or not os.path.isfile(python):
        return "Set up the engine first (Engine Environment › Set Up Engine)"
    if _task is not None:
        return "A models command is running"
    return ""


def _start(prefs, action: str, ids=()) -> ModelsTask:
    return ModelsTask(bpy.path.abspath(prefs.python_path), action, ids,
                      models_dir=bpy.path.abspath(prefs.cache_folder), token=prefs.hub_token)


def _adopt(status: ModelsStatus) -> None:
    """Store a finished command's outcome (main thread)."""
    if status.action == "list" and status.ok:
        _listing.clear()
        _listing.update(status.models)
    elif status.action == "download":
        if status.ok:
            done = [e for e in status.events if e.get("event") == "done"]
            _report[0] = "Downloaded " + ", ".join(f"{e['id']} ({human_bytes(e['bytes_on_disk'])})" for e in done)
        elif status.error_code == "cancelled":
            _report[0] = "Download cancelled: Download again to resume where it stopped"
        else:
            _report[0] = f"Download failed: {status.error}"
    elif status.action == "remove" and status.ok:
        freed = sum(e.get("freed_bytes", 0) for e in status.events if e.get("event") == "removed")
        _report[0] = f"Removed {', '.join(status.ids)}: {human_bytes(freed)} freed"
    elif not status.ok:
        _report[0] = f"{status.action} failed: {status.error}"


def _refresh_now(prefs) -> None:
    task = _start(prefs, "list")
    _adopt(task.wait(120))


def _poll():
    """bpy.app.timers callback: redraw while the command runs; adopt its outcome (and re-list) when it ends."""
    global _task
    if _task is None:
        return None
    redraw_ui()
    status = _task.status()
    if not status.finished:
        return POLL_S
    _adopt(status)
    _task = None
    if status.action != "list":
        try:
            _run(get_preferences(), "list")
        except RuntimeError:
            return None
        return POLL_S
    redraw_ui()
    return None


def _run(prefs, action: str, ids=()) -> ModelsStatus | None:
    """Start a command: in the background (Blender's event loop polls it), or to completion without one."""
    global _task
    task = _start(prefs, action, ids)
    if bpy.app.background:
        status = task.wait()
        _adopt(status)
        if action != "list":
            _refresh_now(prefs)
        return status
    _task = task
    if not bpy.app.timers.is_registered(_poll):
        bpy.app.timers.register(_poll, first_interval=POLL_S, persistent=True)
    return None


class _ModelsOperator:
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        try:
            reason = models_block_reason(get_preferences())
        except RuntimeError as exc:
            reason = str(exc)
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def finish(self, status: ModelsStatus | None):
        if status is None:
            return {"FINISHED"}
        if status.ok:
            self.report({"INFO"}, last_report() or "done")
            return {"FINISHED"}
        self.report({"ERROR"}, last_report())
        return {"CANCELLED"}


class CSD_OT_models_refresh(_ModelsOperator, bpy.types.Operator):
    """List the recommended models and those in the Models Folder: present or not, size on disk"""

    bl_idname = "csd.models_refresh"
    bl_label = "Refresh Models"

    def execute(self, context):
        return self.finish(_run(get_preferences(), "list"))


class CSD_OT_model_download(_ModelsOperator, bpy.types.Operator):
    """Download this model into the Models Folder with the engine's Python (resumable; Blender stays usable)"""

    bl_idname = "csd.model_download"
    bl_label = "Download Model"
    model_id: StringProperty(name="Model", default="")

    def execute(self, context):
        if not self.model_id:
            self.report({"ERROR"}, "no model given")
            return {"CANCELLED"}
        _report[0] = ""
        return self.finish(_run(get_preferences(), "download", (self.model_id,)))


class CSD_OT_model_remove(_ModelsOperator, bpy.types.Operator):
    """Delete this model from the Models Folder (download it again to use it)"""

    bl_idname = "csd.model_remove"
    bl_label = "Remove Model"
    model_id: StringProperty(name="Model", default="")

    def execute(self, context):
        return self.finish(_run(get_preferences(), "remove", (self.model_id,)))


class CSD_OT_models_cancel(bpy.types.Operator):
    """Stop the download (what is there is kept: Download again to resume)"""

    bl_idname = "csd.models_cancel"
    bl_label = "Cancel Download"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        if _task is None:
            cls.poll_message_set("Nothing is downloading")
            return False
        return True

    def execute(self, context):
        _task.cancel()
        return {"FINISHED"}


def recommended_rows() -> list[tuple]:
    """(entry, state text, size text) for the draw code: every recommended model, then others in the folder."""
    rows = []
    for entry in RECOMMENDED:
        info = _listing.get(entry.id, {})
        rows.append((entry.id, entry.label, info, entry))
    for model_id, info in sorted(_listing.items()):
        if all(model_id != e.id for e in RECOMMENDED):
            rows.append((model_id, model_id, info, None))
    return rows


CLASSES = (CSD_OT_models_refresh, CSD_OT_model_download, CSD_OT_model_remove, CSD_OT_models_cancel)


def unregister() -> None:
    """Before CLASSES are unregistered: stop a running command."""
    global _task
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    if _task is not None:
        _task.cancel()
        _task = None
