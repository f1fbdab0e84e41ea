"""Operators of the Results list: apply a result, reuse its settings, delete it (each one undo step); and Reuse Job
Settings of the active object's applied result (the texture panel's button)."""
from __future__ import annotations

import json

import bpy
from bpy.props import IntProperty

from ..props import job_params
from ..protocol.errors import ProtocolError
from ..scene import results


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

    def execute(self, context):
        obj, i = _target(context, self.index)
        if obj is None:
            self.report({"ERROR"}, i)
            return {"CANCELLED"}
        return self.run(context, obj, i)

    def run(self, context, obj, i: int) -> set:
        """The operator on result `i` of `obj` (both checked); return the operator's status set."""
        raise NotImplementedError


class CSD_OT_result_apply(_ResultOperator, bpy.types.Operator):
    """Switch the object's material slots to this result's materials (same slots, face materials unchanged)"""

    bl_idname = "csd.result_apply"
    bl_label = "Apply Result"

    def run(self, context, obj, i: int) -> set:
        rec = obj.csd.results[i]
        if not any(e.material is not None for e in rec.slots):
            self.report({"ERROR"}, f"Result {rec.name!r} has no materials left")
            return {"CANCELLED"}
        results.apply(obj, rec)
        obj.csd.active_result = i
        self.report({"INFO"}, f"{obj.name!r} shows result {rec.name!r} (seed {rec.seed})")
        return {"FINISHED"}


# Scene settings group of each task's panel; Reuse Settings copies a stored job's fields into it.
SETTINGS_OF_TASK = {"texture": "csd", "generate": "csd_generate", "edit": "csd_edit"}
TASK_PANELS = {"texture": "Generate texture from text", "generate": "Text to mesh", "edit": "Edit selected object"}


def copy_matching_fields(group, params: dict) -> list[str]:
    """Set each property of `group` named like a key of `params` (None -> 0 for "Auto" numbers).

    Args:
        group: a PropertyGroup (e.g. Scene.csd_edit).
        params: a stored job's parameters.

    Returns:
        The names that were set.
    """
    done = []
    props = group.bl_rna.properties
    for key, value in params.items():
        prop = props.get(key)
        if prop is None or prop.is_readonly or prop.type not in {"INT", "FLOAT", "BOOLEAN", "STRING", "ENUM"}:
            continue
        if value is None and prop.type in {"INT", "FLOAT"}:
            value = 0
        if prop.type == "ENUM" and value not in prop.enum_items.keys():
            continue
        try:
            setattr(group, key, value)
        except (TypeError, ValueError, OverflowError):
            continue
        done.append(key)
    return done


def reuse_settings(context, task: str, params_json: str) -> str:
    """Restore a stored job's settings into its panel; return what was restored ("seed 7", "5 fields").

    Raises:
        ProtocolError: the stored text is not usable.
    """
    if task == "texture":
        params = job_params.loads_params(params_json)
        job_params.settings_from_params(context.scene.csd, params)
        return f"seed {params.seed}"
    group = getattr(context.scene, SETTINGS_OF_TASK.get(task, ""), None)
    try:
        data = json.loads(params_json)
    except ValueError as exc:
        raise ProtocolError("bad_request", f"stored settings: not valid JSON ({exc})") from None
    if group is None or not isinstance(data, dict):
        raise ProtocolError("bad_request", f"no panel settings for task {task!r}")
    if "use_random_seed" in group.bl_rna.properties:
        group.use_random_seed = False
    fields = copy_matching_fields(group, data)
    return f"{len(fields)} fields"


class CSD_OT_result_reuse(_ResultOperator, bpy.types.Operator):
    """Copy this result's job settings (prompt, seed, model, steps, ...) back into the panel"""

    bl_idname = "csd.result_reuse"
    bl_label = "Reuse Settings"

    def run(self, context, obj, i: int) -> set:
        rec = obj.csd.results[i]
        try:
            what = reuse_settings(context, rec.task or "texture", rec.params_json)
        except ProtocolError as exc:
            self.report({"ERROR"}, f"Stored settings are not usable: {exc.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Settings of {rec.name!r} ({rec.task}, {what}) restored")
        return {"FINISHED"}


class CSD_OT_result_delete(_ResultOperator, bpy.types.Operator):
    """Delete this result: its materials and image leave the file when nothing else uses them (an applied
    result gives the slots back their original materials)"""

    bl_idname = "csd.result_delete"
    bl_label = "Delete Result"

    def run(self, context, obj, i: int) -> set:
        name = obj.csd.results[i].name
        results.remove(obj, i)
        self.report({"INFO"}, f"Result {name!r} deleted from {obj.name!r}")
        return {"FINISHED"}


class CSD_OT_reuse_settings(bpy.types.Operator):
    """Copy the settings stored on the active object's CSD result back into the panel (same seed included)"""

    bl_idname = "csd.reuse_settings"
    bl_label = "Reuse Job Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or results.PARAMS_KEY not in obj:
            cls.poll_message_set("The active object has no CSD result")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        task = results.stored_task(obj) or "texture"    # an edit or text-to-mesh result restores its own panel
        try:
            what = reuse_settings(context, task, obj[results.PARAMS_KEY])
        except ProtocolError as exc:
            self.report({"ERROR"}, f"Stored settings are not usable: {exc.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Settings of the {TASK_PANELS.get(task, task)} job with {what} restored")
        return {"FINISHED"}


CLASSES = (CSD_OT_result_apply, CSD_OT_result_reuse, CSD_OT_result_delete, CSD_OT_reuse_settings)
