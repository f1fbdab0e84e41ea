"""What `EngineClient.poll()` hands its caller (events), and numpy arrays <-> wire arrays (no bpy).

Besides the protocol's own `Accepted`, `Progress`, `ErrorReply` and `Cancelled`, the client reports a finished
job as `JobResult` (its arrays as numpy), a silent engine as `EngineDied` and its return as `EngineRecovered`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.limits import DTYPE_SIZES
from ..protocol.messages import Accepted, Array, Cancelled, ErrorReply, Progress


@dataclass
class JobResult:
    """A finished job: `meta` from the engine and its arrays as numpy (e.g. texture (H,W,C) float32)."""

    job_id: str
    meta: dict
    arrays: dict[str, np.ndarray]


@dataclass
class EngineDied:
    """The engine stopped answering (crash, kill, hang) or the connection was lost."""

    reason: str


@dataclass
class EngineRecovered:
    """The engine answers again after `EngineDied`.

    Args:
        resumed: this client's jobs the engine still has (their events follow as usual).
        cancelled: jobs the caller had given up on, now cancelled.
        lost: jobs the engine no longer knows (each also gets an ENGINE_DIED `ErrorReply` event).
    """

    resumed: list[str]
    cancelled: list[str]
    lost: list[str]


Event = Accepted | Progress | JobResult | ErrorReply | Cancelled | EngineDied | EngineRecovered


def array_to_wire(value: np.ndarray, name: str = "array") -> Array:
    """A numpy array as a little-endian, C-contiguous wire array (float64 becomes float32).

    Args:
        value: array with a dtype in the protocol's allow-list (or float64).
        name: used in the error message.
    """
    value = np.asarray(value)
    if value.dtype == np.float64:
        value = value.astype(np.float32)
    if value.dtype.name not in DTYPE_SIZES:
        raise ProtocolError(
            ErrorCode.BAD_ARRAY,
            f"{name}: dtype {value.dtype} is not one of {', '.join(DTYPE_SIZES)}",
            field=name,
        )
    value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    return Array(value.dtype.name, tuple(int(d) for d in value.shape), value)


def array_from_wire(array: Array) -> np.ndarray:
    """A wire array as a writable numpy array."""
    dtype = np.dtype(array.dtype).newbyteorder("<")
    return np.frombuffer(array.data, dtype=dtype).reshape(array.shape).astype(array.dtype, copy=True)
