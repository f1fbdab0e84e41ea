"""Object.csd: the object's CSD results (the Results list) and its own prompt for batch texturing."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, PointerProperty, StringProperty


class CSDResultSlot(bpy.types.PropertyGroup):
    """The result's material for one material slot of the object (same index)."""

    material: PointerProperty(type=bpy.types.Material, name="Material")


class CSDResult(bpy.types.PropertyGroup):
    """One finished job on this object: what made it and the datablocks it made (`name` is the label)."""

    result_id: StringProperty(name="Id", description="Tags the result's materials and image")
    task: StringProperty(name="Task", default="texture")
    prompt: StringProperty(name="Prompt")
    model: StringProperty(name="Model")
    seed: IntProperty(name="Seed")
    steps: IntProperty(name="Steps", description="Optimisation steps the engine ran")
    texture_size: IntProperty(name="Texture Size")
    date: StringProperty(name="Date", description="When the result was applied (local time)")
    image: PointerProperty(type=bpy.types.Image, name="Texture")
    slots: CollectionProperty(type=CSDResultSlot, name="Materials")
    uv_name: StringProperty(name="UV Map")
    params_json: StringProperty(name="Job Settings",
                                description="The request as sent (reproduces the result)")
    resolved_json: StringProperty(name="Resolved Settings", description="The engine's resolved parameters")
    applied: BoolProperty(name="Applied", description="The object's material slots show this result")


class CSDObjectSettings(bpy.types.PropertyGroup):
    """Object.csd."""

    results: CollectionProperty(type=CSDResult, name="Results")
    active_result: IntProperty(name="Active Result", default=0, min=0)
    prompt: StringProperty(name="Object Prompt", default="",
                           description="Prompt for this object in Texture Selected Objects; empty uses the "
                                       "shared prompt")


CLASSES = (CSDResultSlot, CSDResult, CSDObjectSettings)


def register() -> None:
    """After CLASSES are registered (csd_blender.register)."""
    bpy.types.Object.csd = PointerProperty(type=CSDObjectSettings, name="CSD",
                                           description="CSD results of this object")


def unregister() -> None:
    """Before CLASSES are unregistered."""
    del bpy.types.Object.csd
