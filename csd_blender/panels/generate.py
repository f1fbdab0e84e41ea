"""The "Text to mesh" panel of the CSD sidebar tab: prompt, quality, seed, size; progress of both stages."""

from __future__ import annotations

import bpy

from ..operators.generate import generate_block_reason
from ..protocol import presets
from .common import CSDPanel, draw_job_button, draw_job_progress, draw_prompt, job_model


class CSD_PT_text_to_mesh(CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_text_to_mesh"
    bl_label = "Text to mesh"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.csd_generate
        model = job_model(context)
        draw_prompt(layout, settings, presets.guess_family(model))
        col = layout.column(align=True)
        col.label(text=f"Model: {model} (the texture panel's)", icon="NODE_MATERIAL")
        col.prop(settings, "quality")
        col.prop(settings, "refine")
        col.prop(settings, "steps_coarse", text="Coarse Steps (0 = Auto)")
        if settings.refine != "none":
            col.prop(settings, "steps_refine", text="Refine Steps (0 = Auto)")
        col.prop(settings, "face_budget")
        col.prop(settings, "size")
        row = col.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "use_random_seed", text="", icon="FILE_REFRESH")
        layout.label(text="The new object stands on the 3D cursor (origin at its base)", icon="PIVOT_CURSOR")

        if draw_job_progress(layout, "generate"):
            return
        draw_job_button(layout, "csd.text_to_mesh", "MESH_MONKEY", generate_block_reason(context))


CLASSES = (CSD_PT_text_to_mesh,)
