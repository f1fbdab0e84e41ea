"""The "CSD" tab in the 3D viewport sidebar: Generate texture from text (with the object's Results), Text to
mesh (panel_generate), Engine.

Settings read as what will happen: the target object is named, "Auto" fields show the preset's resolved
value, the camera rig's fields appear only when a rig is used, the toy model's words are listed.

To add a job's panel: write its operator (a job_operator.ModalJobOperator), a panel class with bl_parent_id
unset and bl_category = CATEGORY, and append it to PANELS in the position it should appear.
"""
from __future__ import annotations

import bpy

from . import job_params
from .engine_session import SESSION
from .operators_engine import start_block_reason
from .operators_jobs import batch_block_reason, selected_meshes, texture_block_reason
from .paths import PACKAGE
from .protocol import presets
from .protocol.params import MAX_PROMPT_CHARS
from .uv_choice import draw_uvs

CATEGORY = "CSD"


class _CSDPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


def resolved_preset(settings, default_model: str) -> tuple[str, presets.Quality]:
    """(family, preset values) the engine will use for the current model and quality."""
    family = presets.guess_family(settings.model.strip() or default_model or "toy")
    return family, presets.quality_for(family, settings.quality)


def _default_model() -> str:
    from . import preferences

    try:
        return preferences.get_preferences().default_model
    except RuntimeError:                    # the add-on is being disabled
        return "toy"


def draw_prompt(layout, settings, family: str) -> None:
    """Prompt fields with their length against the limit, and the toy model's words."""
    col = layout.column(align=True)
    col.prop(settings, "prompt", text="", placeholder="Prompt")
    col.prop(settings, "negative_prompt", text="", placeholder="Negative prompt")
    for label, text in (("Prompt", settings.prompt), ("Negative prompt", settings.negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            row = layout.row()
            row.alert = True
            row.label(text=f"{label}: {len(text)}/{MAX_PROMPT_CHARS} characters, too long", icon="ERROR")
    if family == "toy":
        box = layout.box()
        col = box.column(align=True)
        col.label(text="Toy model: \"a {colour} {pattern} {shape}\"", icon="INFO")
        col.label(text="Colours: " + ", ".join(presets.TOY_COLOURS))
        col.label(text="Patterns: " + ", ".join(presets.TOY_PATTERNS))
        col.label(text="Shapes: " + ", ".join(presets.TOY_SHAPES))
        unknown = presets.unknown_toy_words(settings.prompt + " " + settings.negative_prompt)
        if unknown:
            row = col.row()
            row.alert = True
            row.label(text="Unknown to the toy model: " + ", ".join(unknown[:6]), icon="ERROR")
    else:
        layout.label(text=f"{len(settings.prompt)}/{MAX_PROMPT_CHARS} characters")


def draw_auto_field(layout, settings, name: str, text: str, resolved: str) -> None:
    """An integer field where 0 means "from the preset", with the preset's resolved value beside it."""
    row = layout.row(align=True)
    row.prop(settings, name, text=text)
    sub = row.row()
    sub.enabled = False
    sub.label(text=f"Auto: {resolved}" if getattr(settings, name) == 0 else f"Preset: {resolved}")


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


class CSD_PT_texture(_CSDPanel, bpy.types.Panel):
    bl_idname = "CSD_PT_texture"
    bl_label = "Generate texture from text"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.csd
        job = SESSION.job
        layout.use_property_split = False
        family, quality = resolved_preset(settings, _default_model())
        draw_target(layout, context)
        draw_prompt(layout, settings, family)

        col = layout.column(align=True)
        col.prop(settings, "model", placeholder=f"Default: {_default_model() or 'toy'}")
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
        draw_views(layout, settings)

        box = layout.box()
        box.label(text="Result", icon="MATERIAL")
        box.prop(settings, "keep_previous_results")
        row = box.row(align=True)
        row.prop(settings, "texture_depth", expand=True)
        box.prop(settings, "texture_storage")

        if job is not None:
            layout.label(text=f"Texturing: {job.target}", icon="OBJECT_DATA")
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
            meshes = selected_meshes(context)
            if len(meshes) > 1:
                layout.operator("csd.texture_selected", icon="TEXTURE",
                                text=f"Texture {len(meshes)} Selected Objects")
                reason = batch_block_reason(context)
                if reason:
                    layout.label(text=reason, icon="INFO")
        obj = context.active_object
        if obj is not None and job_params.PARAMS_KEY in obj:
            layout.operator("csd.reuse_settings", icon="RECOVER_LAST")


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


class CSD_PT_results(_CSDPanel, bpy.types.Panel):
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
            reason = start_block_reason()
            if reason:                      # the button is greyed out: say why and where to fix it
                layout.label(text=reason, icon="INFO")
                layout.operator("preferences.addon_show", text="Open Add-on Preferences",
                                icon="PREFERENCES").module = PACKAGE
        layout.operator("csd.open_log", icon="TEXT")


# Panels in display order. Add "Text to mesh" / "Edit selected object" here once their tasks exist.
# The Engine panel comes first: nothing else works until it runs (and its Start button says what is missing).
from .panel_generate import CSD_PT_text_to_mesh  # noqa: E402 - after the helpers it draws with

from .panel_edit import CSD_PT_edit  # noqa: E402 - after the helpers it draws with

PANELS = (CSD_PT_engine, CSD_PT_texture, CSD_PT_text_to_mesh, CSD_PT_edit, CSD_UL_results, CSD_PT_results)


def register() -> None:
    for cls in PANELS:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(PANELS):
        bpy.utils.unregister_class(cls)
