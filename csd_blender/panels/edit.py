"""The "Edit selected object" panel of the CSD sidebar tab: target and edit prompts, strength, preservation."""
from __future__ import annotations

import bpy

from ..operators.edit import base_color_image, edit_block_reason, texture_problem
from ..protocol import presets
from ..scene.results import PARAMS_KEY, stored_task
from .common import (
    CSDPanel,
    draw_job_button,
    draw_job_progress,
    draw_region,
    draw_unknown_toy_words,
    job_model,
)


class CSD_PT_edit(CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_edit"
    bl_label = "Edit selected object"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.csd_edit
        model = job_model(context)
        col = layout.column(align=True)
        col.prop(settings, "target_prompt", text="", placeholder="Target: what it should become")
        col.prop(settings, "edit_prompt", text="", placeholder="Edit: what it is now")
        if presets.guess_family(model) == "toy":
            draw_unknown_toy_words(layout, settings.target_prompt + " " + settings.edit_prompt)
        col = layout.column(align=True)
        col.label(text=f"Model: {model} (the texture panel's)", icon="NODE_MATERIAL")
        col.prop(settings, "strength")
        col.prop(settings, "preserve")
        col.prop(settings, "geometry")
        col.prop(settings, "quality")
        col.prop(settings, "steps", text="Steps (0 = Auto)")
        row = col.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "use_random_seed", text="", icon="FILE_REFRESH")

        obj = context.active_object
        draw_region(layout, settings.region, obj)
        if obj is not None and obj.type == "MESH":
            problem = texture_problem(obj)
            if problem:
                row = layout.row()
                row.alert = True
                row.label(text=problem, icon="ERROR")
            else:
                image, _ = base_color_image(obj)
                layout.label(text=f"Edits {image.name} ({image.size[0]}x{image.size[1]}) on "
                                  f"{obj.data.uv_layers.active.name}; a new image and material are made",
                             icon="IMAGE_DATA")

        if draw_job_progress(layout, "edit"):
            return
        draw_job_button(layout, "csd.edit_object", "BRUSH_DATA", edit_block_reason(context))
        if obj is not None and PARAMS_KEY in obj and stored_task(obj) == "edit":    # this panel's own results
            layout.operator("csd.reuse_settings", icon="RECOVER_LAST")


CLASSES = (CSD_PT_edit,)
