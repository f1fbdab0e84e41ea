"""Job parameters for each task: one typed definition shared by the add-on, the command line and the engine.

Standard library only. `from_dict` rejects unknown fields and wrong types; `validate()` checks ranges and
names the field at fault. Array inputs (mesh, cameras) travel beside the parameters as raw buffers; their
expected dtypes and shapes are listed in `ARRAY_SPECS`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from .errors import ErrorCode, ProtocolError

MAX_PROMPT_CHARS = 1000
MAX_FACES = 1_000_000
MAX_VERTICES = 3_000_000
TEXTURE_SIZE_RANGE = (64, 4096)
MAX_STEPS = 100_000
MAX_CAMERAS = 256
QUALITY_PRESETS = ("fast", "balanced", "best")
CONTROLNET_KINDS = ("depth", "normal", "canny")
MAX_MODEL_CHARS = 512           # hub id or folder path of a model or ControlNet
BACKGROUNDS = ("random", "white", "black", "gray")


def _fail(field_name: str, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
    return ProtocolError(code, f"{field_name}: {message}", field=field_name)


def check_prompt(field_name: str, value: Any, *, allow_empty: bool) -> None:
    """Raise BAD_PROMPT unless `value` is a str of sane length (non-empty unless allowed)."""
    if not isinstance(value, str):
        raise _fail(field_name, f"must be a string, got {type(value).__name__}", ErrorCode.BAD_PROMPT)
    if not allow_empty and not value.strip():
        raise _fail(field_name, "must not be empty", ErrorCode.BAD_PROMPT)
    if len(value) > MAX_PROMPT_CHARS:
        raise _fail(field_name, f"is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}", ErrorCode.BAD_PROMPT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(field_name, "is not valid UTF-8 (it contains a lone surrogate)", ErrorCode.BAD_PROMPT) from None
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise _fail(field_name, "contains control characters", ErrorCode.BAD_PROMPT)


def split_controlnet_spec(spec: Any) -> tuple[str, str]:
    """A ControlNet entry as (kind, source): "depth" -> ("depth", ""), "depth=/models/cn" -> ("depth", "/models/cn").

    The source is a hub id or a local folder (offline studios keep weights in folders); "" means the engine's
    default ControlNet for that kind.

    Args:
        spec: one entry of `controlnets`.

    Raises:
        ProtocolError: not a string, an unknown kind, an empty or over-long source, control characters.
    """
    if not isinstance(spec, str):
        raise _fail("controlnets", f"entries must be strings, got {type(spec).__name__}")
    kind, sep, source = spec.partition("=")
    kind, source = kind.strip(), source.strip()
    if kind not in CONTROLNET_KINDS:
        raise _fail("controlnets", f"unknown ControlNet {kind!r}; choose from {', '.join(CONTROLNET_KINDS)}, "
                                   "optionally as kind=hub id or folder (depth=/models/controlnet-depth)")
    if sep and not source:
        raise _fail("controlnets", f"{kind}=: give a hub id or a folder after '=' (or just {kind!r})")
    if len(source) > MAX_MODEL_CHARS or any(ord(c) < 32 for c in source):
        raise _fail("controlnets", f"{kind}: the source must be a hub id or a folder path of at most "
                                   f"{MAX_MODEL_CHARS} characters without control characters")
    return kind, source


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise _fail(name, f"must be in [{lo}, {hi}], got {value!r}")


def _check_interval(name: str, value: Any, lo: float, hi: float) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise _fail(name, f"must be a [min, max] pair, got {value!r}")
    for v in value:
        _check_range(name, v, lo, hi)
    if value[0] > value[1]:
        raise _fail(name, f"min must not exceed max, got {list(value)}")


class _Params:
    """Shared (de)serialisation for the parameter dataclasses."""

    TASK: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Any):
        """Build from a JSON object: unknown fields and wrong types are errors that name the field."""
        if not isinstance(data, dict):
            raise _fail("params", f"must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise _fail(unknown[0], f"unknown field for task {cls.TASK!r} (known: {', '.join(sorted(names))})")
        hints = get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = _coerce(key, value, hints[key])
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise _fail(missing[0], "is required")
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against a simple type hint (int, float, str, bool, Optional, list, tuple, dict)."""
    text = str(hint)
    optional = "None" in text or "Optional" in text
    if value is None:
        if optional:
            return None
        raise _fail(name, "must not be null")
    base = text.replace("typing.", "").replace(" | None", "").replace("Optional[", "").rstrip("]") if optional else text
    base = {"<class 'tuple'>": "tuple", "<class 'list'>": "list", "<class 'dict'>": "dict"}.get(base, base)
    if hint is bool or base in ("bool", "<class 'bool'>"):
        if not isinstance(value, bool):
            raise _fail(name, f"must be true or false, got {value!r}")
        return value
    if hint is int or base in ("int", "<class 'int'>"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, f"must be an integer, got {value!r}")
        return value
    if hint is float or base in ("float", "<class 'float'>"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, f"must be a number, got {value!r}")
        return float(value)
    if hint is str or base in ("str", "<class 'str'>"):
        if not isinstance(value, str):
            raise _fail(name, f"must be a string, got {type(value).__name__}")
        return value
    if base.startswith(("tuple", "list")):
        if not isinstance(value, (list, tuple)):
            raise _fail(name, f"must be a list, got {type(value).__name__}")
        return type(value)(value) if base.startswith("list") else tuple(value)
    if base.startswith("dict"):
        if not isinstance(value, dict):
            raise _fail(name, f"must be an object, got {type(value).__name__}")
        return value
    return value


@dataclass
class TextureParams(_Params):
    """Parameters of a texture job: the selected mesh keeps its geometry and gets a UV texture from text.

    Arrays that travel with it: `vertices (V,3) float32` world space, `faces (F,3) int32`, optional
    `uvs (F,3,2) float32` per corner, optional camera rig `c2w (N,4,4) float32` + `intrinsics (N,6) float32`
    (fx, fy, cx, cy, width, height in pixels).
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

    def validate(self) -> "TextureParams":
        """Raise ProtocolError naming the first field out of range; return self."""
        check_prompt("prompt", self.prompt, allow_empty=False)
        check_prompt("negative_prompt", self.negative_prompt, allow_empty=True)
        if not isinstance(self.model, str) or not self.model.strip() or len(self.model) > MAX_MODEL_CHARS:
            raise _fail("model", "must be 'toy', a hub id or a local folder path")
        kinds = [split_controlnet_spec(spec)[0] for spec in self.controlnets]
        if len(set(kinds)) != len(kinds):
            raise _fail("controlnets", f"lists a ControlNet twice: {', '.join(kinds)}")
        if self.controlnet_scales and len(self.controlnet_scales) != len(self.controlnets):
            raise _fail("controlnet_scales", "needs one scale per ControlNet")
        for s in self.controlnet_scales:
            _check_range("controlnet_scales", s, 0.0, 4.0)
        if self.quality not in QUALITY_PRESETS:
            raise _fail("quality", f"must be one of {', '.join(QUALITY_PRESETS)}, got {self.quality!r}")
        if self.steps is not None and not (1 <= self.steps <= MAX_STEPS):
            raise _fail("steps", f"must be in [1, {MAX_STEPS}], got {self.steps}")
        if self.batch_size is not None and not (1 <= self.batch_size <= 64):
            raise _fail("batch_size", f"must be in [1, 64], got {self.batch_size}")
        _check_range("learning_rate", self.learning_rate, 1e-6, 1.0)
        lo, hi = TEXTURE_SIZE_RANGE
        if self.texture_size is not None and not (lo <= self.texture_size <= hi):
            raise _fail("texture_size", f"must be in [{lo}, {hi}], got {self.texture_size}")
        if self.render_size is not None and not (16 <= self.render_size <= 2048):
            raise _fail("render_size", f"must be in [16, 2048], got {self.render_size}")
        if not (0 <= self.seed < 2**63):
            raise _fail("seed", f"must be in [0, 2^63), got {self.seed}")
        if self.background not in BACKGROUNDS:
            raise _fail("background", f"must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        _check_interval("elevation_range", self.elevation_range, -90.0, 90.0)
        _check_interval("azimuth_range", self.azimuth_range, -360.0, 360.0)
        _check_interval("distance_range", self.distance_range, 0.1, 100.0)
        _check_interval("fov_range", self.fov_range, 5.0, 150.0)
        _check_range("camera_jitter", self.camera_jitter, 0.0, 1.0)
        if not (1 <= self.progress_every <= MAX_STEPS):
            raise _fail("progress_every", f"must be in [1, {MAX_STEPS}], got {self.progress_every}")
        if not (16 <= self.preview_size <= 1024):
            raise _fail("preview_size", f"must be in [16, 1024], got {self.preview_size}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise _fail("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self


# Array inputs per task: name -> (dtype, shape with -1 for free dims and names for shared dims, required)
ARRAY_SPECS: dict[str, dict[str, tuple[str, tuple, bool]]] = {
    "texture": {
        "vertices": ("float32", ("V", 3), True),
        "faces": ("int32", ("F", 3), True),
        "uvs": ("float32", ("F", 3, 2), False),
        "c2w": ("float32", ("N", 4, 4), False),
        "intrinsics": ("float32", ("N", 6), False),
    },
}

# The edit job's parameters live in their own module (it imports the helpers above, hence the late import).
from .edit_params import EDIT_ARRAY_SPECS, EditParams  # noqa: E402

ARRAY_SPECS["edit"] = EDIT_ARRAY_SPECS
PARAMS: dict[str, type] = {"texture": TextureParams, "edit": EditParams}
# Text to mesh: parameters in their own module (it imports the helpers above, hence the late import);
# no arrays travel with a generate job.
from .generate_params import GenerateParams  # noqa: E402

ARRAY_SPECS["generate"] = {}
PARAMS["generate"] = GenerateParams
TASK_NAMES: tuple[str, ...] = tuple(PARAMS)
GUIDANCE_NAMES: tuple[str, ...] = ("csd", "sds")   # must equal engine.registry.GUIDANCE (tested)
