"""Region jobs: the mask arrays that restrict a texture or edit job to part of an object, and their checks.

Standard library only (arrays are duck-typed numpy). A region is given as ONE of:

- `face_mask (F,) uint8`: 1 for every triangle of the region (the triangles sent in `faces`, in their order;
  the add-on turns the Edit Mode selection, a face set or a vertex group into it), 0 elsewhere;
- `texel_mask (H, W) float32`: a mask on the object's UVs, top row first (row 0 ↔ v = 1); texels > 0 are the
  region. With an input texture it has the texture's H × W; without one it is square and sets the output size.

What the engine guarantees (`mask_border` texels, default 4): texels of the region and up to `mask_border`
texels around it (Chebyshev distance in the texture) may change, with a weight that falls from 1 to 0 across
the border so the new part blends; every texel farther away comes back bit-identical to the input texture.
A texture job without an input texture has nothing to keep: it returns an RGBA texture whose alpha is that
weight, and every texel outside the border is exactly (0, 0, 0, 0).
"""
from __future__ import annotations

from typing import Any

from ..errors import ErrorCode, ProtocolError
from .base import TEXTURE_SIZE_RANGE

MASK_ARRAYS = ("face_mask", "texel_mask")
MASK_BORDER_RANGE = (0, 64)          # texels of soft border around a region
MASK_ARRAY_SPECS: dict[str, tuple[str, tuple, bool]] = {
    "face_mask": ("uint8", ("F",), False),
    "texel_mask": ("float32", (-1, -1), False),
}
# value ranges the server checks at the door (engine/serve/arrays.py), before any work
ARRAY_VALUE_RANGES: dict[str, tuple[float, float]] = {"face_mask": (0, 1), "texel_mask": (0.0, 1.0)}


def _bad(name: str, message: str, code: ErrorCode = ErrorCode.BAD_MASK) -> ProtocolError:
    return ProtocolError(code, f"{name}: {message}", field=name)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(value, "shape", ()))


def region_mask_name(arrays: dict[str, Any]) -> str | None:
    """The mask array a job carries ("face_mask" or "texel_mask"), or None for a whole-object job."""
    given = [name for name in MASK_ARRAYS if arrays.get(name) is not None]
    if len(given) > 1:
        raise _bad("texel_mask", "give face_mask or texel_mask, not both")
    return given[0] if given else None


def check_mask_arrays(arrays: dict[str, Any], texture_shape: tuple[int, ...] | None = None,
                      geometry: bool = False) -> str | None:
    """Check a job's region mask against its mesh, UVs and input texture; return the mask's name (or None).

    Args:
        arrays: name -> numpy array, already checked against the task's ARRAY_SPECS (dtype, rank, F).
        texture_shape: the input texture's shape (H, W, C), or None when the job has none.
        geometry: the job moves the surface (edit `geometry`), which no region can be kept on.

    Raises:
        ProtocolError: BAD_MASK naming the array (no face or texel selected, values other than 0/1, a texel mask
            whose size differs from the texture's, both masks, a region with `geometry`); NO_UVS for a texel mask
            on an object without UVs.
    """
    name = region_mask_name(arrays)
    if name is None:
        return None
    mask = arrays[name]
    if geometry:
        raise _bad(name, "a region cannot be kept with geometry on (the surface itself moves); edit the whole "
                         "object or turn geometry off")
    if name == "face_mask":
        faces = _shape(arrays.get("faces"))
        if len(_shape(mask)) != 1 or (faces and _shape(mask)[0] != faces[0]):
            raise _bad(name, f"must have one entry per face ({faces[0] if faces else 'F'}), got {list(_shape(mask))}")
        if bool((mask > 1).any()):
            raise _bad(name, "values must be 0 (keep) or 1 (region)")
        if not bool(mask.any()):
            raise _bad(name, "selects no face: select the faces to change (Edit Mode) or turn the region off")
        return name
    if arrays.get("uvs") is None:
        raise _bad(name, "a texel mask lives on the object's UVs, and the object has none; send face_mask",
                   ErrorCode.NO_UVS)
    shape = _shape(mask)
    if texture_shape is not None and shape != tuple(texture_shape[:2]):
        raise _bad(name, f"is {shape[1]}×{shape[0]} texels but the texture is {texture_shape[1]}×{texture_shape[0]}")
    if texture_shape is None:
        lo, hi = TEXTURE_SIZE_RANGE
        if len(shape) != 2 or shape[0] != shape[1] or not (lo <= shape[0] <= hi):
            raise _bad(name, f"without an input texture it sets the output size: square, each side in [{lo}, {hi}], "
                             f"got {list(shape)}")
    if bool((mask < 0).any()) or bool((mask > 1).any()):
        raise _bad(name, "values must lie in [0, 1]")
    if not bool((mask > 0).any()):
        raise _bad(name, "selects no texel")
    return name
