"""The "Generate texture from text" panel: target, prompt, model and quality, ControlNet, UVs, views, how the
result is kept, and the job's progress.

Settings read as what will happen: the target object is named, "Auto" fields show the preset's resolved
value, the camera rig's fields appear only when a rig is used, the toy model's words are listed.
"""
from __future__ import annotations

import bpy

from ..link.session import SESSION
from ..operators.texture import batch_block_reason, selected_meshes, texture_block_reason
from ..props import prefs
from ..scene.mesh import render_uv_name
from ..scene.results import PARAMS_KEY, stored_task
from .common import (
    CSDPanel,
    draw_auto_field,
    draw_job_button,
    draw_job_progress,
    draw_prompt,
    draw_region,
    resolved_preset,
)


def draw_uvs(layout, context) -> None:
    """The panel's UV section: which UV map the texture is made for, or a new unwrap."""
    settings = context.scene.csd
    box = layout.box()
    obj = context.active_object
    mesh = obj.data if obj is not None and obj.type == "MESH" else None
    row = box.row(align=True)
    row.enabled = not settings.uv_unwrap
    if mesh is not None:
        render = render_uv_name(mesh)
        row.prop_search(settings, "uv_map", mesh, "uv_layers", icon="GROUP_UVS",
                        placeholder=f"Render UV map ({render})" if render else "No UV map: a new one")
    else:
        row.prop(settings, "uv_map", icon="GROUP_UVS", placeholder="Render UV map")
    box.prop(settings, "uv_unwrap", text="Unwrap New UV Map")
    if mesh is not None and settings.uv_map.strip() and mesh.uv_layers.get(settings.uv_map.strip()) is None \
            and not settings.uv_unwrap:
        box.label(text=f"{obj.name} has no UV map {settings.uv_map.strip()!r}", icon="ERROR")


def draw_views(layout, settings) -> None:
    """The view source; the rig's fields only when a camera rig is used."""
    box = layout.box()
    box.label(text="Views", icon="CAMERA_DATA")
    box.row().prop(settings, "camera_mode", expand=True)
    if settings.camera_mode != "COLLECTION":
        return
    box.prop(settings, "camera_collection")
    sub = box.column(align=True)
    sub.prop(settings, "rig_cameras")
    sub.prop(settings, "rig_elevation")
    sub.prop(settings, "rig_distance")
    sub.prop(settings, "rig_lens")
    sub.operator("csd.add_camera_rig", icon="OUTLINER_OB_CAMERA")


def draw_target(layout, context) -> None:
    """Names what a job will change: the active mesh, and the selection for Texture Selected Objects."""
    obj = context.active_object
    if obj is not None and obj.type == "MESH":
        slots = len(obj.material_slots)
        layout.label(text=f"Target: {obj.name} ({len(obj.data.polygons)} faces, {slots} material slot"
                          f"{'' if slots == 1 else 's'})", icon="OBJECT_DATA")
    else:
        layout.label(text="Target: no mesh selected", icon="OBJECT_DATA")


class CSD_PT_texture(CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_texture"
    bl_label = "Generate texture from text"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.csd
        job = SESSION.job
        layout.use_property_split = False
        family, quality = resolved_preset(settings, prefs.default_model())
        draw_target(layout, context)
        draw_prompt(layout, settings, family)

        col = layout.column(align=True)
        col.prop(settings, "model", placeholder=f"Default: {prefs.default_model() or 'toy'}")
        col.prop(settings, "quality")
        draw_auto_field(col, settings, "steps", "Steps", f"{quality.steps} ({family} {settings.quality})")
        draw_auto_field(col, settings, "texture_size", "Texture Size",
                        f"{quality.texture_size}x{quality.texture_size}")
        col.prop(settings, "progress_every")
        row = col.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "use_random_seed", text="", icon="FILE_REFRESH")

        box = layout.box()
        box.prop(settings, "controlnet")
        if settings.controlnet != "NONE":
            box.prop(settings, f"controlnet_{settings.controlnet}_source", text="Source",
                     placeholder="Default for Stable Diffusion 1.5")
            box.prop(settings, "controlnet_scale")
        draw_uvs(layout, context)
        draw_region(layout, settings.region, context.active_object)
        draw_views(layout, settings)

        box = layout.box()
        box.label(text="Result", icon="MATERIAL")
        box.prop(settings, "keep_previous_results")
        row = box.row(align=True)
        row.prop(settings, "texture_depth", expand=True)
        box.prop(settings, "texture_storage")

        if job is not None:
            layout.label(text=f"Texturing: {job.target}", icon="OBJECT_DATA")
            draw_job_progress(layout, None)
        else:
            draw_job_button(layout, "csd.texture_from_text", "TEXTURE", texture_block_reason(context))
            meshes = selected_meshes(context)
            if len(meshes) > 1:
                layout.operator("csd.texture_selected", icon="TEXTURE",
                                text=f"Texture {len(meshes)} Selected Objects")
                reason = batch_block_reason(context)
                if reason:
                    layout.label(text=reason, icon="INFO")
        obj = context.active_object
        if obj is not None and PARAMS_KEY in obj and stored_task(obj) == "texture":   # per task: its own panel
            layout.operator("csd.reuse_settings", icon="RECOVER_LAST")


CLASSES = (CSD_PT_texture,)
