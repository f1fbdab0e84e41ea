"""The texture job's parameters and its array inputs (mesh, optional UVs, camera rig and region)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import (
    BACKGROUNDS,
    MAX_MODEL_CHARS,
    MAX_STEPS,
    QUALITY_PRESETS,
    TEXTURE_SIZE_RANGE,
    Params,
    check_interval,
    check_prompt,
    check_prompts_differ,
    check_range,
    check_run_options,
    fail,
    split_controlnet_spec,
)
from .region import MASK_ARRAY_SPECS, MASK_BORDER_RANGE


@dataclass
class TextureParams(Params):
    """Parameters of a texture job: the selected mesh keeps its geometry and gets a UV texture from text.

    Arrays that travel with it: `vertices (V,3) float32` world space, `faces (F,3) int32`, optional
    `uvs (F,3,2) float32` per corner, optional camera rig `c2w (N,4,4) float32` + `intrinsics (N,6) float32`
    (fx, fy, cx, cy, width, height in pixels). A region job adds `face_mask` or `texel_mask` and, to keep the rest
    of an object that has a texture, that `texture (H,W,3|4) float32` (params/region.py says what is kept).
    """

    TASK: ClassVar[str] = "texture"

    prompt: str
    negative_prompt: str = ""
    model: str = "toy"                     # "toy", a hub id or a local diffusers folder
    controlnets: list = field(default_factory=list)           # "depth" or "depth=hub id or folder"
    controlnet_scales: list = field(default_factory=list)     # one per ControlNet (default 1.0)
    quality: str = "balanced"              # QUALITY_PRESETS: sets steps, batch size, texture size defaults
    guidance: str = "auto"                 # guidance preset name, or "auto" (chosen for the prior)
    guidance_overrides: dict = field(default_factory=dict)
    steps: int | None = None
    batch_size: int | None = None
    learning_rate: float = 0.01
    texture_size: int | None = None
    render_size: int | None = None         # None: the prior's resolution
    seed: int = 0
    background: str = "random"             # BACKGROUNDS
    elevation_range: tuple = (-10.0, 45.0)  # degrees, orbit sampling (ignored with a camera rig)
    azimuth_range: tuple = (-180.0, 180.0)
    distance_range: tuple = (1.5, 2.0)     # in units of the normalised mesh (fits [-0.5, 0.5]^3)
    fov_range: tuple = (40.0, 60.0)        # vertical field of view, degrees
    camera_jitter: float = 0.05            # rig cameras: random rotation/translation jitter (fraction)
    progress_every: int = 10               # steps between progress events
    preview_size: int = 128
    device: str = "auto"                   # "auto", "cpu", "cuda", "cuda:N"
    return_partial: bool = False           # on cancel, bake and return what exists so far
    mask_border: int = 4                   # region jobs: texels of soft border around the mask (params/region.py)

    def validate(self) -> TextureParams:
        """Raise ProtocolError naming the first field out of range; return self."""
        check_prompt("prompt", self.prompt, allow_empty=False)
        check_prompt("negative_prompt", self.negative_prompt, allow_empty=True)
        check_prompts_differ("negative_prompt", self.negative_prompt, "prompt", self.prompt,
                             "the negative score would cancel the prompt's; leave it empty or name what to avoid")
        if not isinstance(self.model, str) or not self.model.strip() or len(self.model) > MAX_MODEL_CHARS:
            raise fail("model", "must be 'toy', a hub id or a local folder path")
        kinds = [split_controlnet_spec(spec)[0] for spec in self.controlnets]
        if len(set(kinds)) != len(kinds):
            raise fail("controlnets", f"lists a ControlNet twice: {', '.join(kinds)}")
        if self.controlnet_scales and len(self.controlnet_scales) != len(self.controlnets):
            raise fail("controlnet_scales", "needs one scale per ControlNet")
        for s in self.controlnet_scales:
            check_range("controlnet_scales", s, 0.0, 4.0)
        if self.quality not in QUALITY_PRESETS:
            raise fail("quality", f"must be one of {', '.join(QUALITY_PRESETS)}, got {self.quality!r}")
        if self.steps is not None and not (1 <= self.steps <= MAX_STEPS):
            raise fail("steps", f"must be in [1, {MAX_STEPS}], got {self.steps}")
        if self.batch_size is not None and not (1 <= self.batch_size <= 64):
            raise fail("batch_size", f"must be in [1, 64], got {self.batch_size}")
        check_range("learning_rate", self.learning_rate, 1e-6, 1.0)
        lo, hi = TEXTURE_SIZE_RANGE
        if self.texture_size is not None and not (lo <= self.texture_size <= hi):
            raise fail("texture_size", f"must be in [{lo}, {hi}], got {self.texture_size}")
        if self.render_size is not None and not (16 <= self.render_size <= 2048):
            raise fail("render_size", f"must be in [16, 2048], got {self.render_size}")
        if not (0 <= self.seed < 2**63):
            raise fail("seed", f"must be in [0, 2^63), got {self.seed}")
        if self.background not in BACKGROUNDS:
            raise fail("background", f"must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        check_interval("elevation_range", self.elevation_range, -90.0, 90.0)
        check_interval("azimuth_range", self.azimuth_range, -360.0, 360.0)
        check_interval("distance_range", self.distance_range, 0.1, 100.0)
        check_interval("fov_range", self.fov_range, 5.0, 150.0)
        check_range("camera_jitter", self.camera_jitter, 0.0, 1.0)
        check_run_options(self.progress_every, self.preview_size, self.device)
        lo, hi = MASK_BORDER_RANGE
        if isinstance(self.mask_border, bool) or not (lo <= self.mask_border <= hi):
            raise fail("mask_border", f"must be in [{lo}, {hi}] texels, got {self.mask_border}")
        return self


# Array inputs per task: name -> (dtype, shape with -1 for free dims and names for shared dims, required)
TEXTURE_ARRAY_SPECS: dict[str, tuple[str, tuple, bool]] = {
    "vertices": ("float32", ("V", 3), True),
    "faces": ("int32", ("F", 3), True),
    "uvs": ("float32", ("F", 3, 2), False),
    "c2w": ("float32", ("N", 4, 4), False),
    "intrinsics": ("float32", ("N", 6), False),
    "texture": ("float32", (-1, -1, -1), False),   # region jobs only: the texture outside the region is kept
    **MASK_ARRAY_SPECS,
}
