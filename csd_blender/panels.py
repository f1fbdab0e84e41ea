"""The "CSD" tab in the 3D viewport sidebar: Generate texture from text, and Engine.

"Text to mesh" and "Edit selected object" panels belong here too (DESIGN §5); their engine tasks do not exist
yet (protocol.jobs.TASK_NAMES has only "texture"), so they are not registered. To add one: write its
operator in operators_jobs.py, a panel class below with bl_parent_id unset and bl_category = CATEGORY, and
append it to PANELS in the position it should appear.
"""
from __future__ import annotations

import bpy

from . import job_params
from .engine_session import SESSION
from .operators_jobs import texture_block_reason

CATEGORY = "CSD"


class _CSDPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class CSD_PT_texture(_CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_texture"
    bl_label = "Generate texture from text"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.csd
        job = SESSION.job
        layout.use_property_split = False
        col = layout.column(align=True)
        col.prop(settings, "prompt", text="", placeholder="Prompt")
        col.prop(settings, "negative_prompt", text="", placeholder="Negative prompt")

        col = layout.column(align=True)
        col.prop(settings, "quality")
        col.prop(settings, "steps")
        col.prop(settings, "texture_size")
        col.prop(settings, "progress_every")
        row = col.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "use_random_seed", text="", icon="FILE_REFRESH")
        col.prop(settings, "model", placeholder="Default from preferences")

        box = layout.box()
        box.prop(settings, "controlnet")
        if settings.controlnet != "NONE":
            box.prop(settings, "controlnet_scale")

        box = layout.box()
        box.label(text="Camera Rig", icon="CAMERA_DATA")
        box.row().prop(settings, "camera_mode", expand=True)
        if settings.camera_mode == "COLLECTION":
            box.prop(settings, "camera_collection", text="")
        sub = box.column(align=True)
        sub.prop(settings, "rig_cameras")
        sub.prop(settings, "rig_elevation")
        sub.prop(settings, "rig_distance")
        sub.prop(settings, "rig_lens")
        sub.operator("csd.add_camera_rig", icon="OUTLINER_OB_CAMERA")

        if job is not None:
            layout.progress(factor=job.fraction, type="BAR", text=job.text())
            layout.operator("csd.cancel", icon="CANCEL")
            image = bpy.data.images.get(job.preview_name) if job.preview_name else None
            if image is not None:
                image.preview_ensure()
                layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
        else:
            reason = texture_block_reason(context)
            row = layout.row()
            row.scale_y = 1.5
            row.operator("csd.texture_from_text", icon="TEXTURE")
            if reason:
                layout.label(text=reason, icon="INFO")
        obj = context.active_object
        if obj is not None and job_params.PARAMS_KEY in obj:
            layout.operator("csd.reuse_settings", icon="RECOVER_LAST")


class CSD_PT_engine(_CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_engine"
    bl_label = "Engine"

    def draw(self, context):
        layout = self.layout
        col = layout.column(align=True)
        icon = "CHECKMARK" if SESSION.connected else ("ERROR" if SESSION.last_error else "RADIOBUT_OFF")
        for i, line in enumerate(SESSION.describe()):
            col.label(text=line, icon=icon if i == 0 else "BLANK1")
        row = layout.row(align=True)
        if SESSION.connected:
            row.operator("csd.engine_stop", icon="PAUSE")
            row.operator("csd.engine_release", icon="TRASH")
        elif SESSION.starting:
            row.operator("csd.engine_stop", text="Cancel Start", icon="CANCEL")
        else:
            row.operator("csd.engine_start", icon="PLAY")
        layout.operator("csd.open_log", icon="TEXT")


# Panels in display order. Add "Text to mesh" / "Edit selected object" here once their tasks exist.
PANELS = (CSD_PT_texture, CSD_PT_engine)


def register() -> None:
    for cls in PANELS:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(PANELS):
        bpy.utils.unregister_class(cls)
