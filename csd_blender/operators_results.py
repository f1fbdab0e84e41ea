"""Operators of the Results list: apply a result, reuse its settings, delete it (each one undo step)."""
from __future__ import annotations

import bpy
from bpy.props import IntProperty

from . import job_params, results
from .protocol.errors import ProtocolError


def _target(context, index: int):
    """(object, result index) for the operator's `index` (-1: the active entry), or (None, reason)."""
    obj = context.active_object
    if obj is None or not hasattr(obj, "csd") or not len(obj.csd.results):
        return None, "The active object has no CSD results"
    i = obj.csd.active_result if index < 0 else index
    if not 0 <= i < len(obj.csd.results):
        return None, f"No result {i} on {obj.name!r} (it has {len(obj.csd.results)})"
    return obj, i


class _ResultOperator:
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty(name="Result", default=-1, min=-1,
                       description="Index in the object's Results list (-1: the selected entry)")

    @classmethod
    def poll(cls, context):
        obj, reason = _target(context, -1)
        if obj is None:
            cls.poll_message_set(reason)
            return False
        return True


class CSD_OT_result_apply(_ResultOperator, bpy.types.Operator):
    """Switch the object's material slots to this result's materials (same slots, face materials unchanged)"""

    bl_idname = "csd.result_apply"
    bl_label = "Apply Result"

    def execute(self, context):
        obj, i = _target(context, self.index)
        if obj is None:
            self.report({"ERROR"}, i)
            return {"CANCELLED"}
        rec = obj.csd.results[i]
        if not any(e.material is not None for e in rec.slots):
            self.report({"ERROR"}, f"Result {rec.name!r} has no materials left")
            return {"CANCELLED"}
        results.apply(obj, rec)
        obj.csd.active_result = i
        self.report({"INFO"}, f"{obj.name!r} shows result {rec.name!r} (seed {rec.seed})")
        return {"FINISHED"}


class CSD_OT_result_reuse(_ResultOperator, bpy.types.Operator):
    """Copy this result's job settings (prompt, seed, model, steps, ...) back into the panel"""

    bl_idname = "csd.result_reuse"
    bl_label = "Reuse Settings"

    def execute(self, context):
        obj, i = _target(context, self.index)
        if obj is None:
            self.report({"ERROR"}, i)
            return {"CANCELLED"}
        rec = obj.csd.results[i]
        try:
            params = job_params.loads_params(rec.params_json)
        except ProtocolError as exc:
            self.report({"ERROR"}, f"Stored settings are not usable: {exc.message}")
            return {"CANCELLED"}
        job_params.settings_from_params(context.scene.csd, params)
        self.report({"INFO"}, f"Settings of {rec.name!r} (seed {params.seed}) restored")
        return {"FINISHED"}


class CSD_OT_result_delete(_ResultOperator, bpy.types.Operator):
    """Delete this result: its materials and image leave the file when nothing else uses them (an applied
    result gives the slots back their original materials)"""

    bl_idname = "csd.result_delete"
    bl_label = "Delete Result"

    def execute(self, context):
        obj, i = _target(context, self.index)
        if obj is None:
            self.report({"ERROR"}, i)
            return {"CANCELLED"}
        name = obj.csd.results[i].name
        results.remove(obj, i)
        self.report({"INFO"}, f"Result {name!r} deleted from {obj.name!r}")
        return {"FINISHED"}


CLASSES = (CSD_OT_result_apply, CSD_OT_result_reuse, CSD_OT_result_delete)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
