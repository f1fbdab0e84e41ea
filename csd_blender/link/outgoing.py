"""A submit's arrays fitted to the engine they go to (no bpy): as the negotiated protocol carries them, and checked
against the engine's request limits before anything is sent.

From protocol 1.1 an edit texture travels as what it holds: an 8-bit image as uint8 (the caller passes it so) and a
float image as float16, so a 4096² RGBA texture is 64 or 128 MiB instead of 256 MiB; to a 1.0 engine it goes as
float32, the only dtype 1.0 accepts. A request over the engine's limits is refused here, at once, with a message
naming the limit: the engine would refuse it anyway, and a frame far over its limit is cut by ZeroMQ without any
reply.
"""
from __future__ import annotations

import numpy as np

from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.limits import Limits
from ..protocol.messages import Array
from ..protocol.params.edit import texture_refusal, texture_wire_dtype
from .events import array_to_wire

# what a 1.0 engine accepts (its hello reply does not say)
LIMITS_1_0 = Limits()


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


def _texture_for(texture: np.ndarray, minor: int) -> np.ndarray:
    """An edit texture in the dtype the engine's protocol minor takes (uint8 stays uint8 from 1.1)."""
    texture = np.asarray(texture)
    want = texture_wire_dtype(texture.dtype != np.uint8, minor)
    if texture.dtype == want:
        return texture
    if texture.dtype == np.uint8:  # to a 1.0 engine: float32 in [0, 1]
        return texture.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.clip(texture, 0.0, 1.0).astype(want)  # float16 (from 1.1) or float32 (1.0); never inf


def wire_arrays(task: str, arrays: dict[str, np.ndarray], minor: int, limits: dict | None) -> dict[str, Array]:
    """`arrays` as wire arrays for an engine of protocol 1.`minor` with request `limits` (hello_reply.limits;
    None or {} for a 1.0 engine).

    Raises:
        ProtocolError: MESSAGE_TOO_LARGE naming the limit a buffer, the message or the edit texture breaks.
    """
    known = limits or {}
    max_buffer = int(known.get("max_buffer_bytes", LIMITS_1_0.max_buffer_bytes))
    max_message = int(known.get("max_message_bytes", LIMITS_1_0.max_message_bytes))
    max_buffers = int(known.get("max_buffers", LIMITS_1_0.max_buffers))
    arrays = dict(arrays)
    if task == "edit" and arrays.get("texture") is not None and np.ndim(arrays["texture"]) == 3:
        h, w, c = np.shape(arrays["texture"])
        dtype = texture_wire_dtype(np.asarray(arrays["texture"]).dtype != np.uint8, minor)
        why = texture_refusal(h, w, c, dtype, max_buffer)
        if why:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, why, field="texture")
        arrays["texture"] = _texture_for(arrays["texture"], minor)
    wire = {name: array_to_wire(value, name) for name, value in arrays.items()}
    if len(wire) > max_buffers:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"{len(wire)} arrays; the engine accepts at most {max_buffers}")
    for name, array in wire.items():
        if array.nbytes > max_buffer:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"{name}: {_size(array.nbytes)}; the engine accepts at "
                                f"most {_size(max_buffer)} per array", field=name)
    total = sum(a.nbytes for a in wire.values())
    if total > max_message:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"the arrays are {_size(total)} together; the engine "
                            f"accepts at most {_size(max_message)} in one request")
    return wire
