"""Scene.csd: the texture job's settings, shared by every panel for the model and previews (the sidebar's main
settings group); job_params.texture_params turns them into a job."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..protocol.params import MAX_PROMPT_CHARS, TEXTURE_SIZE_RANGE
from .region import CSDRegionSettings

QUALITY_ITEMS = [
    ("fast", "Fast", "Few steps and a small texture: a quick look"),
    ("balanced", "Balanced", "The default trade-off between time and quality"),
    ("best", "Best", "Many steps and a large texture"),
]
CONTROLNET_ITEMS = [
    ("NONE", "None", "No ControlNet conditioning"),
    ("depth", "Depth", "Condition the diffusion model on the rendered depth"),
    ("normal", "Normal", "Condition the diffusion model on the rendered normals"),
    ("canny", "Canny", "Condition the diffusion model on edges of the render"),
]
TEXTURE_DEPTH_ITEMS = [
    ("8", "8-bit", "8-bit sRGB PNG (a quarter of the size of 16-bit)"),
    ("16", "16-bit", "16-bit sRGB PNG (no banding in smooth gradients)"),
]
TEXTURE_STORAGE_ITEMS = [
    ("PACK", "Packed", "Pack the texture PNG into the .blend file"),
    ("FILE", "Beside .blend", "Save the texture PNG in a csd_textures folder next to the saved .blend"),
]
CAMERA_MODE_ITEMS = [
    ("AUTO", "Automatic Orbit", "The engine samples random views on an orbit around the object"),
    ("COLLECTION", "Camera Collection", "Use the cameras of a collection (see Add Camera Rig)"),
]


def _collection_has_camera(_self, collection) -> bool:
    return any(obj.type == "CAMERA" for obj in collection.all_objects)


def _absolute_folder(prop: str):
    """An update callback that turns a blend-relative pick ("//models/sd") into an absolute path: the engine,
    another process, resolves paths without knowing the .blend."""
    def update(self, _context) -> None:
        value = getattr(self, prop)
        if value.startswith("//"):
            setattr(self, prop, bpy.path.abspath(value))
    return update


def _controlnet_source(kind: str):
    return StringProperty(name=f"{kind.capitalize()} ControlNet", default="", subtype="DIR_PATH",
                          update=_absolute_folder(f"controlnet_{kind}_source"),
                          description=f"The {kind} ControlNet: a hub id or a local folder (diffusers layout); "
                                      "empty uses the engine's default for Stable Diffusion 1.5")


class CSDSettings(bpy.types.PropertyGroup):
    """Settings of the texture job (Scene.csd)."""

    # no maxlen: Blender would cut a pasted prompt silently; the panel shows the count and jobs refuse >limit
    prompt: StringProperty(name="Prompt", default="",
                           description=f"What the texture should show (at most {MAX_PROMPT_CHARS} characters)")
    negative_prompt: StringProperty(name="Negative Prompt", default="",
                                    description=f"What the texture should not show (at most {MAX_PROMPT_CHARS} "
                                                "characters)")
    model: StringProperty(name="Model", default="", subtype="DIR_PATH", update=_absolute_folder("model"),
                          description="Diffusion model: 'toy', a hub id or a local folder (pick it with the "
                                      "folder button); empty uses the default from the add-on preferences")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="balanced",
                          description="Preset for steps, batch size and texture size")
    steps: IntProperty(name="Steps", default=0, min=0, soft_max=5000,
                       description="Optimisation steps; 0 uses the quality preset")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Random seed; the same seed gives the same texture")
    use_random_seed: BoolProperty(name="Random Seed", default=False,
                                  description="Pick a new seed for every job (it is stored on the result)")
    texture_size: IntProperty(name="Texture Size", default=0, min=0, max=TEXTURE_SIZE_RANGE[1],
                              description=f"Texture width and height in pixels ({TEXTURE_SIZE_RANGE[0]} to "
                                          f"{TEXTURE_SIZE_RANGE[1]}); 0 uses the quality preset")
    controlnet: EnumProperty(name="ControlNet", items=CONTROLNET_ITEMS, default="NONE",
                             description="Extra conditioning from the mesh (needs a model with that "
                                         "ControlNet)")
    controlnet_scale: FloatProperty(name="Strength", default=1.0, min=0.0, max=4.0,
                                    description="Weight of the ControlNet conditioning")
    controlnet_depth_source: _controlnet_source("depth")
    controlnet_normal_source: _controlnet_source("normal")
    controlnet_canny_source: _controlnet_source("canny")
    uv_map: StringProperty(name="UV Map", default="",
                           description="The UV map the texture is made for; empty: the object's active render "
                                       "UV map")
    uv_unwrap: BoolProperty(name="New UV Map", default=False,
                            description="Let the engine unwrap the mesh into a new UV map (xatlas) instead of "
                                        "using an existing one")
    progress_every: IntProperty(name="Preview Every", default=10, min=1, soft_max=100,
                                description="Steps between progress updates and live previews (each preview "
                                            "costs the engine a small render)")
    camera_mode: EnumProperty(name="Views", items=CAMERA_MODE_ITEMS, default="AUTO",
                              description="Where the views used for optimisation come from")
    camera_collection: PointerProperty(name="Camera Rig", type=bpy.types.Collection,
                                       poll=_collection_has_camera,
                                       description="Collection whose cameras view the object")
    rig_cameras: IntProperty(name="Rig Cameras", default=8, min=1, max=64,
                             description="Number of cameras Add Camera Rig places on the orbit")
    rig_elevation: FloatProperty(name="Rig Elevation", default=0.349066, min=-1.5, max=1.5, subtype="ANGLE",
                                 description="Elevation of the orbit above the object's centre")
    rig_distance: FloatProperty(name="Rig Distance", default=2.5, min=1.05, soft_max=10.0,
                                description="Orbit radius in multiples of the object's bounding radius")
    rig_lens: FloatProperty(name="Rig Focal Length", default=50.0, min=1.0, soft_max=300.0, unit="CAMERA",
                            description="Focal length of the rig's cameras (mm)")
    keep_previous_results: BoolProperty(name="Keep Previous Results", default=False,
                                        description="Keep earlier results of an object as variants in its "
                                                    "Results list; off: a new result replaces the previous one "
                                                    "(its materials and image are removed when unused)")
    texture_depth: EnumProperty(name="Texture Depth", items=TEXTURE_DEPTH_ITEMS, default="8",
                                description="Bits per channel of the texture PNG")
    texture_storage: EnumProperty(name="Texture Storage", items=TEXTURE_STORAGE_ITEMS, default="PACK",
                                  description="Where the texture PNG is kept")
    region: PointerProperty(type=CSDRegionSettings, name="Region",
                            description="Texture only some faces; the rest of the object's texture is kept")


CLASSES = (CSDRegionSettings, CSDSettings)   # the region group first: CSDSettings points at it


def register() -> None:
    """After CLASSES are registered (csd_blender.register)."""
    bpy.types.Scene.csd = PointerProperty(type=CSDSettings, name="CSD",
                                          description="Settings of the CSD texture and mesh tools")


def unregister() -> None:
    """Before CLASSES are unregistered."""
    del bpy.types.Scene.csd
