"""Job parameters, one typed definition per task shared by the add-on, the command line and the engine.

Standard library only; imports nothing of the protocol but `errors` and `limits`. `base` holds the limits and checks
every task shares, and one module per task (`texture`, `edit`, `generate`) its dataclass and array inputs. `from_dict` rejects
unknown fields and wrong types; `validate()` checks ranges and names the field at fault. This module is the table
the rest of the code looks tasks up in.
"""
from .base import (
    BACKGROUNDS,
    CONTROLNET_KINDS,
    MAX_CAMERAS,
    MAX_FACES,
    MAX_MODEL_CHARS,
    MAX_PROMPT_CHARS,
    MAX_STEPS,
    MAX_VERTICES,
    QUALITY_PRESETS,
    TEXTURE_SIZE_RANGE,
    Params,
    check_prompt,
    split_controlnet_spec,
)
from .edit import EDIT_ARRAY_SPECS, EditParams, check_edit_arrays
from .generate import GenerateParams
from .region import ARRAY_VALUE_RANGES, MASK_ARRAYS, MASK_BORDER_RANGE, check_mask_arrays, region_mask_name
from .texture import TEXTURE_ARRAY_SPECS, TextureParams

# Array inputs per task: name -> (dtype, shape with -1 for free dims and names for shared dims, required)
ARRAY_SPECS: dict[str, dict[str, tuple[str, tuple, bool]]] = {
    "texture": TEXTURE_ARRAY_SPECS,
    "edit": EDIT_ARRAY_SPECS,
    "generate": {},            # no arrays travel with a generate job
}
PARAMS: dict[str, type[Params]] = {"texture": TextureParams, "edit": EditParams, "generate": GenerateParams}
TASK_NAMES: tuple[str, ...] = tuple(PARAMS)
GUIDANCE_NAMES: tuple[str, ...] = ("csd", "sds")   # must equal engine.registry.GUIDANCE (tested)

__all__ = [
    "ARRAY_SPECS",
    "ARRAY_VALUE_RANGES",
    "BACKGROUNDS",
    "CONTROLNET_KINDS",
    "EDIT_ARRAY_SPECS",
    "GUIDANCE_NAMES",
    "MASK_ARRAYS",
    "MASK_BORDER_RANGE",
    "MAX_CAMERAS",
    "MAX_FACES",
    "MAX_MODEL_CHARS",
    "MAX_PROMPT_CHARS",
    "MAX_STEPS",
    "MAX_VERTICES",
    "PARAMS",
    "QUALITY_PRESETS",
    "TASK_NAMES",
    "TEXTURE_ARRAY_SPECS",
    "TEXTURE_SIZE_RANGE",
    "EditParams",
    "GenerateParams",
    "Params",
    "TextureParams",
    "check_edit_arrays",
    "check_mask_arrays",
    "check_prompt",
    "region_mask_name",
    "split_controlnet_spec",
]
