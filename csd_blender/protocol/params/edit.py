"""Parameters of the edit job (paper Eq. 11: target and edit prompts) and the checks of its texture and UVs.

Standard library only. The edit job changes an existing textured object: it first fits a texture field to the
object's current texture, then moves it towards `target_prompt` and away from `edit_prompt` (what the object is
now), and bakes the result into a NEW texture on the object's own UVs. Arrays that travel with it:
`vertices (V,3) float32`, `faces (F,3) int32`, `uvs (F,3,2) float32` and `texture (H,W,3|4)` (sRGB, top row first:
float32/float16 in [0, 1], or uint8 0-255). `uvs` and `texture` are optional in `EDIT_ARRAY_SPECS` only so that their absence gets its
own error code (`no_uvs`, `no_texture`) from `check_edit_arrays` instead of a generic `bad_array`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ErrorCode, ProtocolError
from ..limits import DTYPE_SIZES
from .base import Params, check_prompt, check_prompts_differ, check_range, fail
from .region import MASK_ARRAY_SPECS
from .texture import TextureParams

STRENGTH_RANGE = (0.0, 4.0)          # ω1: pull towards the target prompt
OMEGA2_RANGE = (0.0, 4.0)            # ω2: push away from the edit prompt
PRESERVE_RANGE = (0.0, 10.0)         # preservation gradient relative to the unit-norm edit gradient
FIT_PSNR_RANGE = (10.0, 60.0)        # reconstruction target, dB
EDIT_TEXTURE_SIDE = (8, 4096)        # accepted input texture width/height in pixels
UV_MARGIN = 0.1                      # UVs may overhang [0, 1] by this much (real meshes do: Spot by 0.05)

# The texture travels as what it holds (protocol 1.1): an 8-bit image as uint8 (0-255), a float image as float16
# (or float32, the only dtype of 1.0). A 4096² RGBA texture is then 64 MiB (uint8) or 128 MiB (float16), within the
# request limits (limits.REQUEST_LIMITS: 128 MiB per buffer), where float32 (256 MiB) fits only up to 2896².
EDIT_TEXTURE_DTYPES = ("uint8", "float16", "float32")
EDIT_ARRAY_SPECS: dict[str, tuple[str | tuple[str, ...], tuple, bool]] = {
    "vertices": ("float32", ("V", 3), True),
    "faces": ("int32", ("F", 3), True),
    "uvs": ("float32", ("F", 3, 2), False),
    "texture": (EDIT_TEXTURE_DTYPES, (-1, -1, -1), False),
    **MASK_ARRAY_SPECS,                # a region: only there does the texture change (params/region.py)
}


def texture_wire_dtype(is_float: bool, minor: int) -> str:
    """The dtype to send an edit texture as to an engine speaking protocol 1.`minor`: uint8 for an 8-bit image and
    float16 for a float one (1.1), float32 for a 1.0 engine."""
    if minor < 1:
        return "float32"
    return "float16" if is_float else "uint8"


def texture_refusal(height: int, width: int, channels: int, dtype: str, max_buffer_bytes: int) -> str:
    """Why an edit texture is too large to send ("" when it is not), naming the limit it breaks (a texture too
    small is the engine's to refuse: bad_array).

    Args:
        height, width, channels: the texture's shape.
        dtype: the dtype it would travel as (`texture_wire_dtype`).
        max_buffer_bytes: the engine's per-buffer request limit (limits.Limits.max_buffer_bytes).
    """
    lo, hi = EDIT_TEXTURE_SIDE
    if height > hi or width > hi:
        return (f"the texture is {width}×{height} pixels; the engine accepts sides of {lo} to {hi} pixels: scale "
                f"the image down (Image > Resize) or edit a copy")
    nbytes = height * width * channels * DTYPE_SIZES[dtype]
    if nbytes > max_buffer_bytes:
        return (f"the texture is {width}×{height}×{channels} {dtype}, {nbytes / 2**20:.0f} MiB; the engine accepts "
                f"at most {max_buffer_bytes / 2**20:.0f} MiB per array (update the engine to send it as "
                f"{'float16' if dtype == 'float32' else dtype}, or scale the image down)")
    return ""


@dataclass
class EditParams(Params):
    """Parameters of an edit job (Eq. 11): δ = ω1·(ε(y_target) − ε(∅)) − ω2·(ε(y_edit) − ε(∅)).

    With ω1 = ω2 the null branch cancels and δ = ε(y_target) − ε(y_edit): only what differs between the two
    prompts is pushed. `strength` is ω1; `omega2` = 0 is plain target-prompt CSD starting from the fitted
    texture. Either may be scheduled through `guidance_overrides` (`{"omega2": [start_step, start, end, end_step]}`).
    Nothing in δ holds what the prompts share in place, so `preserve` adds a unit-norm pull of the renders back to
    the original's (in the prior's space), weighted against the unit-L2 edit direction: 1 balances the two.
    Measured on the toy prior (red → blue stripes, 150 steps): 0 turns the white bands blue as well, 1 keeps the
    red, 0.35 (the default) makes blue bands and keeps the layout.
    """

    TASK: ClassVar[str] = "edit"

    target_prompt: str                     # what the object should become, e.g. "a blue striped sphere"
    edit_prompt: str                       # what it is now / the attribute to change, e.g. "a red striped sphere"
    strength: float = 1.0                  # ω1 (STRENGTH_RANGE)
    omega2: float = 1.0                    # ω2 (OMEGA2_RANGE)
    preserve: float = 0.35                 # weight of the pull back to the original renders (PRESERVE_RANGE)
    geometry: bool = False                 # let the surface move too (deformable tetrahedral grid)
    model: str = "toy"
    quality: str = "balanced"
    guidance: str = "csd-edit"
    guidance_overrides: dict = field(default_factory=dict)
    steps: int | None = None               # edit steps (None: the quality preset's)
    fit_max_steps: int = 1500              # reconstruction steps at most
    fit_psnr: float = 35.0                 # reconstruction stops once renders and texels reach this PSNR (dB)
    batch_size: int | None = None
    learning_rate: float = 0.01
    texture_size: int | None = None        # None: the input texture's own size
    render_size: int | None = None
    seed: int = 0
    background: str = "random"
    elevation_range: tuple = (-10.0, 45.0)
    azimuth_range: tuple = (-180.0, 180.0)
    distance_range: tuple = (1.5, 2.0)
    fov_range: tuple = (40.0, 60.0)
    progress_every: int = 10
    preview_size: int = 128
    device: str = "auto"
    return_partial: bool = False
    mask_border: int = 4                   # region edits: texels of soft border around the mask

    def validate(self) -> EditParams:
        """Raise ProtocolError naming the first field at fault; return self.

        Prompts: both required, and different (identical prompts make δ vanish for ω1 = ω2). The fields it
        shares with the texture job are checked by `TextureParams.validate` (same names, same ranges).
        """
        check_prompt("target_prompt", self.target_prompt, allow_empty=False)
        check_prompt("edit_prompt", self.edit_prompt, allow_empty=False)
        check_prompts_differ("edit_prompt", self.edit_prompt, "target_prompt", self.target_prompt,
                             "the edit is the difference between them; describe what the object is now")
        check_range("strength", self.strength, *STRENGTH_RANGE)
        check_range("omega2", self.omega2, *OMEGA2_RANGE)
        if self.strength == 0 and self.omega2 == 0:
            raise fail("strength", "strength and omega2 are both 0: nothing would be edited")
        check_range("preserve", self.preserve, *PRESERVE_RANGE)
        check_range("fit_psnr", self.fit_psnr, *FIT_PSNR_RANGE)
        if isinstance(self.fit_max_steps, bool) or not (0 <= self.fit_max_steps <= 100_000):
            raise fail("fit_max_steps", f"must be in [0, 100000], got {self.fit_max_steps}")
        if not isinstance(self.guidance, str) or not self.guidance.strip():
            raise fail("guidance", "must be a guidance preset name")
        self.as_texture_params().validate()
        return self

    def as_texture_params(self) -> TextureParams:
        """The texture-job view of these parameters (prompt = target, negative = edit): view sampling and
        the checks of the shared fields reuse it."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TextureParams)
                  if hasattr(self, f.name) and f.name not in ("prompt", "negative_prompt")}
        return TextureParams(prompt=self.target_prompt, negative_prompt=self.edit_prompt, camera_jitter=0.0,
                             **{k: v for k, v in shared.items() if k != "camera_jitter"})


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(value, "shape", ()))


def check_edit_arrays(arrays: dict[str, Any]) -> None:
    """Check that an edit job has a texture and UVs that fit together (numpy arrays, duck-typed).

    Args:
        arrays: name -> array, already checked against `EDIT_ARRAY_SPECS` (dtypes, ranks, finite values).

    Raises:
        ProtocolError: NO_TEXTURE (no texture), NO_UVS (no UVs), BAD_ARRAY (texture not (H, W, 3|4) or a side
            outside EDIT_TEXTURE_SIDE), UV_TEXTURE_MISMATCH (UVs outside the texture's [0, 1] square, or a UV
            map with no area, e.g. never unwrapped).
    """
    texture, uvs = arrays.get("texture"), arrays.get("uvs")
    if texture is None:
        raise ProtocolError(ErrorCode.NO_TEXTURE, "texture: the object has no base-colour image texture to "
                            "edit; give it one first (e.g. Generate texture from text)", field="texture")
    if uvs is None:
        raise ProtocolError(ErrorCode.NO_UVS, "uvs: the object has no UV map, so its texture cannot be read or "
                            "written back; unwrap it or use Generate texture from text first", field="uvs")
    shape = _shape(texture)
    if len(shape) != 3 or shape[2] not in (3, 4):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"texture: must be (H, W, 3) or (H, W, 4), got {list(shape)}",
                            field="texture")
    lo, hi = EDIT_TEXTURE_SIDE
    if not (lo <= shape[0] <= hi and lo <= shape[1] <= hi):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"texture: {shape[1]}×{shape[0]} pixels; each side must be in "
                            f"[{lo}, {hi}]", field="texture")
    flat: Sequence[float] = uvs.reshape(-1)  # type: ignore[attr-defined]
    outside = int(((flat < -UV_MARGIN) | (flat > 1 + UV_MARGIN)).reshape(-1, 2).any(1).sum())
    if outside:
        raise ProtocolError(ErrorCode.UV_TEXTURE_MISMATCH,
                            f"uvs: {outside} of {flat.size // 2} UV corners lie outside the texture's [0, 1] square "
                            f"(by more than {UV_MARGIN}): tiled or UDIM UVs cannot be baked back into one image",
                            field="uvs")
    a, b, c = uvs[:, 0], uvs[:, 1], uvs[:, 2]  # type: ignore[index]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    texels = float(abs(cross).sum()) * 0.5 * shape[0] * shape[1]
    if texels < 1.0:
        raise ProtocolError(ErrorCode.UV_TEXTURE_MISMATCH,
                            f"uvs: the UV map covers {texels:.2g} texels of the {shape[1]}×{shape[0]} texture (every "
                            "face collapses to a point or a line); unwrap the mesh", field="uvs")
