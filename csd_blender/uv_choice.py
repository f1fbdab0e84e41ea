"""UVs chosen, not assumed: the UV check before a texture job and the dialog that lets the user decide.

Texture operators mix in `UVChoiceMixin` and declare `uv_action: EnumProperty(items=UV_ACTION_ITEMS, ...)`.
With "ASK" (the default) a UV map that does not fit one texture (uv_check) stops the job: interactively a
dialog shows the warning and offers "Unwrap a new UV map" (the engine's xatlas unwrap, as for meshes without
UVs) or "Use these UVs anyway"; from scripts the operator is refused with the warning and the two choices.
"""
from __future__ import annotations

import textwrap

from . import convert, uv_check

UV_ACTION_ITEMS = [
    ("ASK", "Check UVs", "Check the UV map first; warn when faces lie outside 0-1 or overlap"),
    ("KEEP", "Use These UVs", "Use the UV map as it is, even where faces share texels"),
    ("UNWRAP", "Unwrap New UV Map", "Let the engine unwrap the mesh into a new UV map (xatlas)"),
]


class UVProblem(ValueError):
    """The chosen UV map does not fit one texture and the user has not decided what to do."""


def job_uv_source(settings, uv_action: str) -> tuple[str | None, bool]:
    """(UV map name or None for the render UV map, unwrap) for a job from the panel settings and the choice.

    Args:
        settings: Scene.csd (uv_map, uv_unwrap).
        uv_action: "ASK", "KEEP" or "UNWRAP".
    """
    unwrap = bool(settings.uv_unwrap) or uv_action == "UNWRAP"
    return (settings.uv_map.strip() or None), unwrap


def check_mesh_uvs(obj_name: str, mesh_info: convert.MeshArrays, uv_action: str) -> None:
    """Raise UVProblem when the UVs about to be sent do not fit one texture and the choice is still "ASK".

    Args:
        obj_name: the object (for the message).
        mesh_info: what convert.mesh_arrays read (uvs None: the engine unwraps, nothing to check).
        uv_action: the operator's choice.
    """
    if uv_action != "ASK" or mesh_info.uvs is None:
        return
    problems = uv_check.uv_report(mesh_info.uvs, mesh_info.uv_name or "").problems()
    if problems:
        raise UVProblem(f"{obj_name}: {' '.join(problems)}. Choose 'Unwrap New UV Map' (uv_action='UNWRAP') "
                        "or 'Use These UVs' (uv_action='KEEP')")


def uv_warnings(context, objects) -> list[str]:
    """The UV problems of `objects` for the current settings, "Name: problem" per line (empty: all fit).

    Args:
        objects: mesh objects about to be textured.
    """
    settings = context.scene.csd
    uv_name, unwrap = job_uv_source(settings, "ASK")
    if unwrap:
        return []
    depsgraph = context.evaluated_depsgraph_get()
    reports = {}
    for obj in objects:
        try:
            info = convert.mesh_arrays(obj, depsgraph, uv_name=uv_name)
        except ValueError:
            continue                       # prepare() reports it with the job's other checks
        if info.uvs is not None:
            reports[obj.name] = uv_check.uv_report(info.uvs, info.uv_name or "")
    return uv_check.summary(reports)


class UVChoiceMixin:
    """invoke(): the UV check dialog before the job; draw(): its content (the warning and the two choices)."""

    def uv_targets(self, context) -> list:
        """The objects this operator will texture (override for batches)."""
        return [context.active_object] if context.active_object is not None else []

    def invoke(self, context, event):
        self._uv_warnings = []
        if self.uv_action == "ASK":
            self._uv_warnings = uv_warnings(context, [o for o in self.uv_targets(context) if o.type == "MESH"])
            if self._uv_warnings:
                self.uv_action = "UNWRAP"          # the recommended choice, pre-selected
                return context.window_manager.invoke_props_dialog(self, width=520, title="UV Map Check",
                                                                  confirm_text="Generate")
        return self.execute(context)

    def draw(self, context):
        """The dialog only: the redo panel (no warnings) shows nothing, so a finished job is not re-run there."""
        layout = self.layout
        warnings = getattr(self, "_uv_warnings", [])
        if not warnings:
            return
        col = layout.column(align=True)         # a label is one line: wrap the sentences to the dialog's width
        lines = [part for line in warnings for part in textwrap.wrap(line, 78)]
        for i, line in enumerate(lines):
            col.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        row = layout.row(align=True)
        row.prop_enum(self, "uv_action", "UNWRAP")
        row.prop_enum(self, "uv_action", "KEEP")


def draw_uvs(layout, context) -> None:
    """The panel's UV section: which UV map the texture is made for, or a new unwrap."""
    settings = context.scene.csd
    box = layout.box()
    obj = context.active_object
    mesh = obj.data if obj is not None and obj.type == "MESH" else None
    row = box.row(align=True)
    row.enabled = not settings.uv_unwrap
    if mesh is not None:
        render = convert.render_uv_name(mesh)
        row.prop_search(settings, "uv_map", mesh, "uv_layers", icon="GROUP_UVS",
                        placeholder=f"Render UV map ({render})" if render else "No UV map: a new one")
    else:
        row.prop(settings, "uv_map", icon="GROUP_UVS", placeholder="Render UV map")
    box.prop(settings, "uv_unwrap", text="Unwrap New UV Map")
    if mesh is not None and settings.uv_map.strip() and mesh.uv_layers.get(settings.uv_map.strip()) is None \
            and not settings.uv_unwrap:
        box.label(text=f"{obj.name} has no UV map {settings.uv_map.strip()!r}", icon="ERROR")
