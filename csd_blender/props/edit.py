"""Scene.csd_edit: the Edit selected object panel's settings (target and edit prompts, strength, preservation);
job_params.edit_params turns them into a job."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..protocol.params.edit import PRESERVE_RANGE, STRENGTH_RANGE
from .region import CSDRegionSettings

QUALITY_ITEMS = [
    ("fast", "Fast", "Few edit steps: a quick look"),
    ("balanced", "Balanced", "The default trade-off between time and quality"),
    ("best", "Best", "Many edit steps and views"),
]


class CSDEditSettings(bpy.types.PropertyGroup):
    """Settings of the edit job (Scene.csd_edit)."""

    target_prompt: StringProperty(name="Target", default="",
                                  description="What the object should become, e.g. 'a blue striped sphere'")
    edit_prompt: StringProperty(name="Edit", default="",
                                description="What the object is now (the attribute to change), e.g. "
                                            "'a red striped sphere'; what both prompts share is kept")
    strength: FloatProperty(name="Strength", default=1.0, min=STRENGTH_RANGE[0], max=STRENGTH_RANGE[1],
                            soft_min=0.25, soft_max=2.0,
                            description="ω1: pull towards the target prompt (against the push away from the "
                                        "edit prompt, ω2 = 1)")
    preserve: FloatProperty(name="Preserve", default=0.35, min=PRESERVE_RANGE[0], max=PRESERVE_RANGE[1],
                            soft_max=1.0,
                            description="Pull back towards the original look, relative to the edit (0 = off; "
                                        "1 = as strong as the edit)")
    geometry: BoolProperty(name="Edit Geometry", default=False,
                           description="Let the surface move too: the result is a new object (new mesh and UVs) "
                                       "beside the original")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="balanced",
                          description="Preset for the number of edit steps and views per step")
    steps: IntProperty(name="Steps", default=0, min=0, soft_max=5000,
                       description="Edit steps (0: from the quality preset)")
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed (same seed, same result on a CPU)")
    use_random_seed: BoolProperty(name="Random Seed", default=False,
                                  description="Draw a new seed for every run (the one used is stored on the result)")
    region: PointerProperty(type=CSDRegionSettings, name="Region",
                            description="Edit only some faces; every texel outside them stays bit for bit")


CLASSES = (CSDEditSettings,)


def register() -> None:
    """After CLASSES are registered (csd_blender.register)."""
    bpy.types.Scene.csd_edit = PointerProperty(type=CSDEditSettings, name="CSD Edit",
                                               description="Settings of the CSD edit-selected-object tool")


def unregister() -> None:
    """Before CLASSES are unregistered."""
    del bpy.types.Scene.csd_edit
