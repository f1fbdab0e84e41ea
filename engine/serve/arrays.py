"""Wire arrays to numpy, checked against csd_blender.protocol.params.ARRAY_SPECS (and a camera rig against the mesh)
before any work starts."""

from __future__ import annotations

import numpy as np

from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.messages import Array
from csd_blender.protocol.params import ARRAY_SPECS, ARRAY_VALUE_RANGES, MAX_FACES, MAX_VERTICES

from ..errors import EngineError

# Arrays that describe the mesh: their problems are INVALID_MESH, other arrays' are BAD_ARRAY.
MESH_ARRAYS = ("vertices", "faces", "uvs")
# index array -> the array whose first dimension it indexes
INDEX_ARRAYS = {"faces": "vertices"}
# named dimension -> (limit, what it counts)
DIM_LIMITS = {"V": (MAX_VERTICES, "vertices"), "F": (MAX_FACES, "faces")}


def _error(name: str, message: str, code: ErrorCode | None = None) -> EngineError:
    if code is None:
        code = ErrorCode.INVALID_MESH if name in MESH_ARRAYS else ErrorCode.BAD_ARRAY
    return EngineError(code, f"{name}: {message}", field=name)


def to_numpy(array: Array) -> np.ndarray:
    """A wire array as a writable numpy array (copied out of the frame).

    Args:
        array: a decoded `Array` (its byte length was already checked against dtype and shape).
    """
    return _view(array).astype(array.dtype, copy=True)


def _view(array: Array) -> np.ndarray:
    """A read-only numpy view of a wire array's frame (no copy: rejected input costs no memory)."""
    dtype = np.dtype(array.dtype).newbyteorder("<")
    return np.frombuffer(array.data, dtype=dtype).reshape(array.shape)


def _count_non_finite(value: np.ndarray, chunk: int = 1 << 20) -> int:
    """Non-finite entries of a float array, checked in chunks so the temporaries stay small (4 MB at most)."""
    flat = value.reshape(-1)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + chunk]))) for i in range(0, flat.size, chunk))


def from_numpy(value: np.ndarray) -> Array:
    """A numpy array as a wire array (little-endian, C-contiguous; no copy when already so).

    Args:
        value: an array whose dtype is in the protocol's allow-list.
    """
    value = np.asarray(value)
    if value.dtype == np.float64:
        value = value.astype(np.float32)
    if value.dtype == np.bool_:
        value = value.astype(np.uint8)
    value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    return Array(value.dtype.name, tuple(int(d) for d in value.shape), value)


def check_arrays(task: str, arrays: dict[str, Array]) -> dict[str, np.ndarray]:
    """Validate a submit's arrays for `task` and convert them to numpy.

    Checks, in order: known names, required arrays present, dtype, rank and fixed dimensions, named
    dimensions consistent across arrays (uvs F == faces F), face/vertex limits (MESH_TOO_LARGE, checked on
    the shapes before the data is read), empty meshes, finite floats, mask value ranges and index ranges.

    Args:
        task: a task name with an entry in ARRAY_SPECS.
        arrays: name -> decoded wire array.

    Returns:
        name -> numpy array (writable copies).

    Raises:
        EngineError: BAD_ARRAY, INVALID_MESH or MESH_TOO_LARGE naming the array.
    """
    specs = ARRAY_SPECS.get(task, {})
    unknown = sorted(set(arrays) - set(specs))
    if unknown:
        raise _error(
            unknown[0], f"unknown array for task {task!r} (known: {', '.join(specs)})", ErrorCode.BAD_ARRAY
        )
    dims: dict[str, tuple[int, str]] = {}
    for name, (dtype, shape, required) in specs.items():
        if name not in arrays:
            if required:
                raise _error(name, "is required", ErrorCode.BAD_ARRAY)
            continue
        array = arrays[name]
        allowed = (dtype,) if isinstance(dtype, str) else tuple(dtype)
        if array.dtype not in allowed:
            raise _error(name, f"dtype is {array.dtype}, expected {' or '.join(allowed)}", ErrorCode.BAD_ARRAY)
        if len(array.shape) != len(shape):
            raise _error(
                name,
                f"shape {list(array.shape)} has {len(array.shape)} dimensions, expected "
                f"{len(shape)} ({', '.join(map(str, shape))})",
                ErrorCode.BAD_ARRAY,
            )
        for axis, (want, got) in enumerate(zip(shape, array.shape)):
            if isinstance(want, int) and want >= 0 and want != got:
                raise _error(name, f"dimension {axis} is {got}, expected {want}", ErrorCode.BAD_ARRAY)
            if isinstance(want, str):
                if want in dims and dims[want][0] != got:
                    other = dims[want][1]
                    raise _error(
                        name, f"has {got} along {want} but {other} has {dims[want][0]}", ErrorCode.BAD_ARRAY
                    )
                dims.setdefault(want, (got, name))
    for dim, (limit, what) in DIM_LIMITS.items():
        if dim in dims and dims[dim][0] > limit:
            count, name = dims[dim]
            raise _error(name, f"{count} {what}; the limit is {limit}", ErrorCode.MESH_TOO_LARGE)
    for dim, (_, what) in DIM_LIMITS.items():
        if dim in dims and dims[dim][0] == 0:
            raise _error(dims[dim][1], f"has no {what}", ErrorCode.INVALID_MESH)
    views = {name: _view(array) for name, array in arrays.items()}  # checked in place, copied once valid
    for name, value in views.items():
        if value.dtype.kind == "f":
            bad = _count_non_finite(value)
            if bad:
                raise _error(name, f"{bad} value(s) are NaN or infinite")
    for name, (lo, hi) in ARRAY_VALUE_RANGES.items():  # masks: 0/1 per face, [0, 1] per texel
        value = views.get(name)
        if value is not None and value.size and (value.min() < lo or value.max() > hi):
            raise _error(name, f"values must lie in [{lo}, {hi}]", ErrorCode.BAD_MASK)
    for name, target in INDEX_ARRAYS.items():
        if name in views and target in views:
            index, count = views[name], views[target].shape[0]
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= count:
                bad = lo if lo < 0 else hi
                raise _error(name, f"index {bad} is out of range [0, {count}) of {target}")
    return {name: value.astype(value.dtype.newbyteorder("="), copy=True) for name, value in views.items()}
