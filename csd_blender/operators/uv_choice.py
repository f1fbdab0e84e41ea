"""UVs chosen, not assumed: the dialog before a texture job that lets the user decide (the check: scene.uv_check).

Texture operators mix in `UVChoiceMixin` and declare `uv_action: EnumProperty(items=UV_ACTION_ITEMS, ...)`.
With "ASK" (the default) a UV map that does not fit one texture (uv_check) stops the job: interactively a
dialog shows the warning and offers "Unwrap a new UV map" (the engine's xatlas unwrap, as for meshes without
UVs) or "Use these UVs anyway"; from scripts the operator is refused with the warning and the two choices.
"""
from __future__ import annotations

import textwrap

from ..scene.uv_check import MODIFIER_ONLY_KEEP, uv_warnings

UV_ACTION_ITEMS = [
    ("ASK", "Check UVs", "Check the UV map first; warn when faces lie outside 0-1 or overlap"),
    ("KEEP", "Use These UVs", "Use the UV map as it is, even where faces share texels"),
    ("UNWRAP", "Unwrap New UV Map", "Let the engine unwrap the mesh into a new UV map (xatlas)"),
]


def keep_only(warnings: list[str]) -> bool:
    """Whether the UV warnings say that modifiers leave "Use These UVs" as the only choice that works."""
    return any(MODIFIER_ONLY_KEEP in line for line in warnings)


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
                # the recommended choice, pre-selected: unwrap, unless modifiers make "keep" the only one that works
                self.uv_action = "KEEP" if keep_only(self._uv_warnings) else "UNWRAP"
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
        if not keep_only(warnings):
            row.prop_enum(self, "uv_action", "UNWRAP")
        row.prop_enum(self, "uv_action", "KEEP")
