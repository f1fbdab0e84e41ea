"""What every panel of the "CSD" sidebar tab shares: the base class (the tab's space, region and category, typed
once) and the drawing helpers for prompts, "Auto" fields and a running job's progress."""
from __future__ import annotations

import bpy

from ..link.session import SESSION
from ..props import prefs
from ..protocol import presets
from ..protocol.params import MAX_PROMPT_CHARS

CATEGORY = "CSD"


class CSDPanel:
    """Mixed into every panel of the tab (before bpy.types.Panel)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


def job_model(context) -> str:
    """The model jobs use: the texture panel's Model field, else the preferences' default (shared by every panel)."""
    return context.scene.csd.model.strip() or prefs.default_model() or "toy"


def resolved_preset(settings, default_model: str) -> tuple[str, presets.Quality]:
    """(family, preset values) the engine will use for the current model and quality."""
    family = presets.guess_family(settings.model.strip() or default_model or "toy")
    return family, presets.quality_for(family, settings.quality)


def draw_unknown_toy_words(layout, text: str) -> None:
    """An alert naming the words of `text` the toy model does not know (nothing when it knows them all)."""
    unknown = presets.unknown_toy_words(text)
    if unknown:
        row = layout.row()
        row.alert = True
        row.label(text="Unknown to the toy model: " + ", ".join(unknown[:6]), icon="ERROR")


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
        draw_unknown_toy_words(col, settings.prompt + " " + settings.negative_prompt)
    else:
        layout.label(text=f"{len(settings.prompt)}/{MAX_PROMPT_CHARS} characters")


def draw_auto_field(layout, settings, name: str, text: str, resolved: str) -> None:
    """An integer field where 0 means "from the preset", with the preset's resolved value beside it."""
    row = layout.row(align=True)
    row.prop(settings, name, text=text)
    sub = row.row()
    sub.enabled = False
    sub.label(text=f"Auto: {resolved}" if getattr(settings, name) == 0 else f"Preset: {resolved}")


def draw_job_button(layout, operator: str, icon: str, reason: str) -> None:
    """A panel's large job button, and under it why the job cannot start now (`reason`, "" when it can)."""
    row = layout.row()
    row.scale_y = 1.5
    row.operator(operator, icon=icon)
    if reason:
        layout.label(text=reason, icon="INFO")


def draw_job_progress(layout, task: str) -> bool:
    """The running job of `task` (None: any): progress bar, Cancel, live preview; False when no such job runs."""
    job = SESSION.job
    if job is None or (task is not None and job.task != task):
        return False
    layout.progress(factor=job.fraction, type="BAR", text=job.text())
    layout.operator("csd.cancel", icon="CANCEL")
    image = bpy.data.images.get(job.preview_name) if job.preview_name else None
    if image is not None:
        image.preview_ensure()
        layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
    return True


def draw_region(layout, region, obj) -> None:
    """Selected Faces Only and where the faces come from (Edit Mode selection, a face set, a vertex group)."""
    box = layout.box()
    box.prop(region, "enabled")
    if not region.enabled:
        return
    box.row().prop(region, "source", expand=True)
    mesh = obj.data if obj is not None and obj.type == "MESH" else None
    if region.source == "VERTEX_GROUP":
        if obj is not None:
            box.prop_search(region, "vertex_group", obj, "vertex_groups", icon="GROUP_VERTEX")
        else:
            box.prop(region, "vertex_group")
    elif region.source == "FACE_SET":
        box.prop(region, "face_set")
    elif mesh is not None:
        if obj.mode == "EDIT":
            box.label(text="The faces selected now (Edit Mode)", icon="FACESEL")
        else:
            count = sum(1 for p in mesh.polygons if p.select)
            box.label(text=f"{count} of {len(mesh.polygons)} faces selected (Edit Mode selection)", icon="FACESEL")
    box.label(text="Every other texel stays bit for bit; a 4-texel border blends", icon="INFO")
