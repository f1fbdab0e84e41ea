"""A stand-in for bpy's UILayout: panels and preferences draw into it headless, and every property, operator
and icon they name is checked to exist (headless Blender cannot draw). Import after bpy_env."""
from __future__ import annotations

from types import SimpleNamespace

import bpy

ICONS = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()


class RecordingLayout:
    """Stands in for UILayout (headless Blender cannot draw): records calls and checks what they name."""

    def __init__(self, calls: list):
        self.calls = calls
        self.use_property_split = False
        self.scale_y = 1.0
        self.enabled = True

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.calls)

    row = column = box = split = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert search_name in search_data.bl_rna.properties, f"no collection {search_name!r} to search"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("prop_search", name))

    def prop_enum(self, data, name, value, **kwargs):
        assert value in data.bl_rna.properties[name].enum_items.keys(), (name, value)
        self.calls.append(("prop_enum", f"{name}={value}"))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), f"no operator {idname}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("operator", idname))
        return SimpleNamespace()

    def label(self, text="", icon="NONE", **kwargs):
        assert icon in ICONS, icon
        self.calls.append(("label", text))

    def progress(self, factor=0.0, text="", type="BAR"):
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", text))

    def template_icon(self, icon_value=0, scale=1.0):
        self.calls.append(("icon", icon_value))


def _draw(panel_cls):
    calls: list = []
    panel_cls.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    return calls
