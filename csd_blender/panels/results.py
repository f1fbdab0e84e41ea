"""The "Results" panel of the active object: its Results list (one row per result of any job) with Apply, Reuse
Settings and Delete, and its own prompt for Texture Selected Objects."""
from __future__ import annotations

import bpy

from .common import CSDPanel


class CSD_UL_results(bpy.types.UIList):
    """One row per result: thumbnail, prompt, seed, steps, model, date; a check mark on the applied one."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        image = item.image
        icon_value = 0
        if image is not None:
            image.preview_ensure()
            icon_value = image.preview.icon_id
        row = layout.row(align=True)
        text = f"{item.prompt[:40]}  seed {item.seed}, {item.steps} steps, {item.model}, {item.date}"
        if icon_value:
            row.label(text=text, icon_value=icon_value)
        else:
            row.label(text=text, icon="IMAGE_DATA")
        row.label(text="", icon="CHECKMARK" if item.applied else "BLANK1")


class CSD_PT_results(CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_results"
    bl_label = "Results"        # of the active object: one list for every job (texture, text to mesh, edit)

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        if obj is None or not hasattr(obj, "csd"):
            layout.label(text="Select an object to see its results")
            return
        layout.prop(obj.csd, "prompt", text="", placeholder=f"Own prompt of {obj.name} (batch)")
        if not len(obj.csd.results):
            layout.label(text=f"{obj.name} has no CSD results yet")
            return
        layout.label(text=f"{obj.name}: {len(obj.csd.results)} result(s)", icon="OBJECT_DATA")
        layout.template_list("CSD_UL_results", "", obj.csd, "results", obj.csd, "active_result", rows=3)
        row = layout.row(align=True)
        row.operator("csd.result_apply", text="Apply", icon="CHECKMARK")
        row.operator("csd.result_reuse", text="Reuse Settings", icon="RECOVER_LAST")
        row.operator("csd.result_delete", text="Delete", icon="TRASH")


CLASSES = (CSD_UL_results, CSD_PT_results)
