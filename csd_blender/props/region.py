"""The region settings the texture and edit panels share (Scene.csd.region, Scene.csd_edit.region): "Selected
Faces Only" and where the faces come from (Edit Mode selection, a face set, a vertex group)."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

SOURCE_ITEMS = [
    ("SELECTION", "Selected Faces", "The faces selected in Edit Mode"),
    ("FACE_SET", "Face Set", "The faces of one sculpt face set"),
    ("VERTEX_GROUP", "Vertex Group", "The faces whose vertices all belong to a vertex group (weight ≥ 0.5)"),
]


class CSDRegionSettings(bpy.types.PropertyGroup):
    """Which faces a job may change; every texel outside them (and a soft border) stays bit for bit."""

    enabled: BoolProperty(name="Selected Faces Only", default=False,
                          description="Change only these faces: the rest of the texture comes back bit for bit "
                                      "(a soft border of a few texels blends the new part in)")
    source: EnumProperty(name="Faces", items=SOURCE_ITEMS, default="SELECTION",
                         description="Where the faces of the region come from")
    vertex_group: StringProperty(name="Vertex Group", default="",
                                 description="The vertex group whose faces are the region")
    face_set: IntProperty(name="Face Set", default=1, min=0,
                          description="The face set id whose faces are the region (Sculpt Mode face sets)")


CLASSES = (CSDRegionSettings,)
