"""Parameters of a text-to-mesh (`generate`) job: standard library only, validated like every task's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import (
    MAX_STEPS,
    QUALITY_PRESETS,
    TEXTURE_SIZE_RANGE,
    Params,
    check_prompt,
    check_prompts_differ,
    check_range,
    check_run_options,
    fail,
)

REFINE_MODES = ("geometry", "texture", "none")
FACE_BUDGET_RANGE = (500, 500_000)
TET_RESOLUTION_RANGE = (8, 256)


@dataclass
class GenerateParams(Params):
    """Text to mesh: a coarse NeRF (stage "coarse"), a DMTet mesh refinement (stage "refine"), then a bake.

    No arrays travel with it. The result is a new mesh in Blender's frame (Z up, centred at the origin, its
    longest side `size` metres) with per-corner UVs and a texture.
    """

    TASK: ClassVar[str] = "generate"

    prompt: str
    negative_prompt: str = ""
    model: str = "toy"  # "toy", a hub id or a local diffusers folder
    refine_model: str = ""  # prior of the refine stage ("" = the same as `model`)
    quality: str = "balanced"  # QUALITY_PRESETS: sets the step counts and sizes left as None
    refine: str = "geometry"  # REFINE_MODES: refine the mesh and texture, the texture only, or neither
    steps_coarse: int | None = None
    steps_refine: int | None = None
    batch_size: int | None = None  # coarse views per step (official: 4)
    coarse_size: int | None = None  # coarse render size (None: the prior's native size)
    refine_size: int | None = None  # refine render size (None: the refine prior's size)
    samples_per_ray: int | None = None
    tet_resolution: int | None = None  # DMTet grid cells per axis
    isosurface_threshold: float | None = (
        None  # density at the surface when the NeRF becomes a mesh (None: the
    )
    # preset's: official 10 for real priors, 1 for short toy runs)
    face_budget: int = 20_000
    texture_size: int | None = None
    size: float = 1.0  # longest side of the result, metres
    learning_rate: float = 0.01
    seed: int = 0
    progress_every: int = 10
    preview_size: int = 128
    device: str = "auto"

    def validate(self) -> GenerateParams:
        """Raise ProtocolError naming the first field out of range; return self."""
        check_prompt("prompt", self.prompt, allow_empty=False)
        check_prompt("negative_prompt", self.negative_prompt, allow_empty=True)
        check_prompts_differ("negative_prompt", self.negative_prompt, "prompt", self.prompt,
                             "the negative score would cancel the prompt's; leave it empty or name what to avoid")
        for name in ("model", "refine_model"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > 512 or (name == "model" and not value.strip()):
                raise fail(name, "must be 'toy', a hub id or a local folder path")
        if self.quality not in QUALITY_PRESETS:
            raise fail("quality", f"must be one of {', '.join(QUALITY_PRESETS)}, got {self.quality!r}")
        if self.refine not in REFINE_MODES:
            raise fail("refine", f"must be one of {', '.join(REFINE_MODES)}, got {self.refine!r}")
        for name in ("steps_coarse", "steps_refine"):
            value = getattr(self, name)
            if value is not None and not (0 <= value <= MAX_STEPS):
                raise fail(name, f"must be in [0, {MAX_STEPS}], got {value}")
        if self.steps_coarse == 0:
            raise fail("steps_coarse", "must be > 0: the mesh comes from the coarse stage")
        if self.batch_size is not None and not (1 <= self.batch_size <= 64):
            raise fail("batch_size", f"must be in [1, 64], got {self.batch_size}")
        for name in ("coarse_size", "refine_size"):
            value = getattr(self, name)
            if value is not None and not (16 <= value <= 1024):
                raise fail(name, f"must be in [16, 1024], got {value}")
        if self.samples_per_ray is not None and not (8 <= self.samples_per_ray <= 1024):
            raise fail("samples_per_ray", f"must be in [8, 1024], got {self.samples_per_ray}")
        lo, hi = TET_RESOLUTION_RANGE
        if self.tet_resolution is not None and not (lo <= self.tet_resolution <= hi):
            raise fail("tet_resolution", f"must be in [{lo}, {hi}], got {self.tet_resolution}")
        if self.isosurface_threshold is not None:
            check_range("isosurface_threshold", self.isosurface_threshold, 1e-3, 1e4)
        lo, hi = FACE_BUDGET_RANGE
        if not (lo <= self.face_budget <= hi):
            raise fail("face_budget", f"must be in [{lo}, {hi}], got {self.face_budget}")
        lo, hi = TEXTURE_SIZE_RANGE
        if self.texture_size is not None and not (lo <= self.texture_size <= hi):
            raise fail("texture_size", f"must be in [{lo}, {hi}], got {self.texture_size}")
        check_range("size", self.size, 1e-3, 1e4)
        check_range("learning_rate", self.learning_rate, 1e-6, 1.0)
        if not (0 <= self.seed < 2**63):
            raise fail("seed", f"must be in [0, 2^63), got {self.seed}")
        check_run_options(self.progress_every, self.preview_size, self.device)
        return self
