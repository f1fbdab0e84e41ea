"""Scene.csd_generate: the Text to mesh panel's settings (prompt, quality, seed, size, refinement);
job_params.generate_params turns them into a job."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..protocol.params import MAX_PROMPT_CHARS
from ..protocol.params.generate import FACE_BUDGET_RANGE

QUALITY_ITEMS = [
    ("fast", "Fast", "Few steps on both stages: a quick look"),
    ("balanced", "Balanced", "The default trade-off between time and quality"),
    ("best", "Best", "Many steps and a fine tetrahedral grid"),
]
REFINE_ITEMS = [
    ("geometry", "Mesh + Texture", "Refine the surface (DMTet) and its texture after the coarse NeRF"),
    ("texture", "Texture Only", "Keep the coarse surface, refine only its texture"),
    ("none", "None", "Marching cubes on the coarse NeRF, textured with its colour"),
]


class CSDGenerateSettings(bpy.types.PropertyGroup):
    """Settings of the text-to-mesh job (Scene.csd_generate)."""

    prompt: StringProperty(
        name="Prompt",
        default="",
        description=f"What the new object should be (at most {MAX_PROMPT_CHARS} characters)",
    )
    negative_prompt: StringProperty(
        name="Negative Prompt", default="", description="What the object should not look like"
    )
    quality: EnumProperty(
        name="Quality",
        items=QUALITY_ITEMS,
        default="balanced",
        description="Preset for the steps of both stages and the grid sizes",
    )
    refine: EnumProperty(
        name="Refine", items=REFINE_ITEMS, default="geometry", description="What the second stage refines"
    )
    steps_coarse: IntProperty(
        name="Coarse Steps",
        default=0,
        min=0,
        soft_max=10000,
        description="NeRF steps (0: from the quality preset)",
    )
    steps_refine: IntProperty(
        name="Refine Steps",
        default=0,
        min=0,
        soft_max=10000,
        description="Mesh refinement steps (0: from the quality preset)",
    )
    face_budget: IntProperty(
        name="Face Budget",
        default=20000,
        min=FACE_BUDGET_RANGE[0],
        max=FACE_BUDGET_RANGE[1],
        description="The most faces the new mesh may have (quadric decimation)",
    )
    size: FloatProperty(
        name="Size",
        default=1.0,
        min=0.001,
        soft_max=10.0,
        unit="LENGTH",
        description="Longest side of the new object",
    )
    seed: IntProperty(
        name="Seed", default=0, min=0, description="Random seed (same seed, same result on a CPU)"
    )
    use_random_seed: BoolProperty(
        name="Random Seed",
        default=False,
        description="Draw a new seed for every run (the one used is stored on the result)",
    )


CLASSES = (CSDGenerateSettings,)


def register() -> None:
    """After CLASSES are registered (csd_blender.register)."""
    bpy.types.Scene.csd_generate = PointerProperty(
        type=CSDGenerateSettings, name="CSD Text to Mesh", description="Settings of the CSD text-to-mesh tool"
    )


def unregister() -> None:
    """Before CLASSES are unregistered."""
    del bpy.types.Scene.csd_generate
