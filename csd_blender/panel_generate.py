"""The "Text to mesh" panel of the CSD sidebar tab: prompt, quality, seed, size; progress of both stages."""

from __future__ import annotations

import bpy

from .engine_session import SESSION
from .operators_generate import generate_block_reason


class CSD_PT_text_to_mesh(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "CSD"
    bl_idname = "CSD_PT_text_to_mesh"
    bl_label = "Text to mesh"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        from .panels import _default_model, draw_prompt
        from .protocol import presets

        layout = self.layout
        settings = context.scene.csd_generate
        model = context.scene.csd.model.strip() or _default_model() or "toy"
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
        layout.label(text="The new object appears at the 3D cursor", icon="PIVOT_CURSOR")

        job = SESSION.job
        if job is not None and job.task == "generate":
            layout.progress(factor=job.fraction, type="BAR", text=job.text())
            layout.operator("csd.cancel", icon="CANCEL")
            image = bpy.data.images.get(job.preview_name) if job.preview_name else None
            if image is not None:
                image.preview_ensure()
                layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
            return
        row = layout.row()
        row.scale_y = 1.5
        row.operator("csd.text_to_mesh", icon="MESH_MONKEY")
        reason = generate_block_reason(context)
        if reason:
            layout.label(text=reason, icon="INFO")
