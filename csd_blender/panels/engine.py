"""The "Engine" panel: the engine's state, device, memory and versions; start, stop, release memory, the log. It
comes first in the tab: nothing else works until the engine runs, and its Start button says what is missing."""
from __future__ import annotations

import bpy

from ..link.session import SESSION
from ..operators.engine import start_block_reason
from ..scene.paths import PACKAGE
from .common import CSDPanel


class CSD_PT_engine(CSDPanel, bpy.types.Panel):
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


CLASSES = (CSD_PT_engine,)
