"""The message machinery under messages.py: `Array` buffers, the content <-> dataclass mapping, and the protocol
version rules (stdlib only).

Versions are "major.minor". A different major never talks. Within one major, a field added in a later minor is
declared with `since(minor)`: `to_wire(minor)` leaves it out for a peer of a lower minor (so an older peer, whose
decoder refuses fields it does not know, never sees it), and `from_wire(..., sender_minor)` ignores, and logs once,
fields it does not know when the sender speaks a higher minor (a newer peer's additions), but refuses them from a
peer of the same or a lower minor (there they are mistakes). Both sides speak the lower of their two minors, which
the handshake settles (`negotiate`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

from .errors import ErrorCode, ProtocolError
from .limits import DTYPE_SIZES, MAX_NDIM

logger = logging.getLogger("csd_blender.protocol")

PROTOCOL_VERSION: tuple[int, int] = (1, 1)
PROTOCOL_VERSION_STR = f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}"
MINOR = PROTOCOL_VERSION[1]
_IGNORED_LOGGED: set[tuple[str, str]] = set()


def since(minor: int) -> dict:
    """The metadata of a dataclass field added in protocol 1.`minor`: `field(default=…, metadata=since(1))`."""
    return {"since": minor}


def field_since(f: dataclasses.Field) -> int:
    """The minor version that added field `f` (0: in 1.0)."""
    return int(f.metadata.get("since", 0))


def version_str(minor: int) -> str:
    """"major.minor" of this side's major and `minor`."""
    return f"{PROTOCOL_VERSION[0]}.{minor}"


def negotiate(peer_minor: int) -> int:
    """The minor both sides speak: the lower of the peer's and this side's (same major, checked by the codec)."""
    return min(int(peer_minor), MINOR)


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED_MESSAGE, message)


@dataclass
class Array:
    """A raw little-endian, C-contiguous array: dtype name, shape and its bytes (no numpy needed).

    Args:
        dtype: one of `limits.DTYPE_SIZES` ("float32", "int32", "int64", "uint8", "float16").
        shape: non-negative dimensions; prod(shape) * itemsize must equal the number of bytes.
        data: the raw bytes (bytes, bytearray, memoryview or any buffer, e.g. a zmq.Frame).
    """

    dtype: str
    shape: tuple[int, ...]
    data: Any

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_SIZES:
            raise ProtocolError(
                ErrorCode.BAD_ARRAY,
                f"dtype {self.dtype!r} is not allowed; use one of {', '.join(DTYPE_SIZES)}",
            )
        if (
            not isinstance(self.shape, (list, tuple))
            or len(self.shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.shape)
        ):
            raise ProtocolError(
                ErrorCode.BAD_ARRAY,
                f"shape {self.shape!r} must be a list of at most {MAX_NDIM} non-negative integers",
            )
        self.shape = tuple(self.shape)
        expected = math.prod(self.shape) * DTYPE_SIZES[self.dtype]
        if self.nbytes != expected:
            raise ProtocolError(
                ErrorCode.BAD_ARRAY,
                f"buffer holds {self.nbytes} bytes but {self.dtype} {list(self.shape)} needs {expected}",
            )

    @property
    def nbytes(self) -> int:
        return memoryview(self.data).nbytes

    def ref(self, index: int) -> dict:
        """The BufferRef that stands for this array in the JSON content."""
        return {"index": index, "dtype": self.dtype, "shape": list(self.shape)}


class _Packer:
    """Collects buffers while a message is turned into content."""

    def __init__(self) -> None:
        self.arrays: list[Array] = []

    def add(self, array: Array) -> dict:
        self.arrays.append(array)
        return array.ref(len(self.arrays) - 1)


class _Unpacker:
    """Resolves BufferRefs against the received buffer frames; each buffer must be used exactly once."""

    def __init__(self, buffers: list) -> None:
        self.buffers = buffers
        self.used: set[int] = set()

    def take(self, ref: Any, where: str) -> Array:
        if not isinstance(ref, dict) or set(ref) != {"index", "dtype", "shape"}:
            raise _malformed(f"{where}: expected a buffer reference {{index, dtype, shape}}, got {ref!r:.80}")
        index = ref["index"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.buffers):
            raise _malformed(
                f"buffer count mismatch: {where} refers to buffer {index!r} "
                f"but the message has {len(self.buffers)} buffer frame(s)"
            )
        if index in self.used:
            raise _malformed(f"{where}: buffer {index} is referenced twice")
        self.used.add(index)
        if not isinstance(ref["dtype"], str):
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: dtype must be a string")
        try:
            return Array(ref["dtype"], ref["shape"], self.buffers[index])
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"{where}: {exc.message}", field=where.split(".")[-1]) from None

    def skip(self, value: Any) -> None:
        """Mark the buffers an ignored field refers to as used (a newer peer's array field)."""
        refs = [value] if isinstance(value, dict) and set(value) == {"index", "dtype", "shape"} else (
            list(value.values()) if isinstance(value, dict) else [])
        for ref in refs:
            index = ref.get("index") if isinstance(ref, dict) else None
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(self.buffers):
                self.used.add(index)

    def check_all_used(self) -> None:
        if len(self.used) != len(self.buffers):
            raise _malformed(
                f"buffer count mismatch: {len(self.buffers)} buffer frame(s) sent, "
                f"{len(self.used)} referenced"
            )


_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": list}


def _kind(hint: Any) -> tuple[str, bool]:
    """A field's type hint as (kind, optional); kind: str/int/float/bool/dict/list/bytes/array/arrays."""
    text = str(hint).replace("typing.", "")
    optional = "None" in text
    text = text.replace(" | None", "").replace("Optional[", "").replace("<class '", "").replace("'>", "")
    if "dict[str" in text and "Array" in text:
        return "arrays", optional
    if "Array" in text:
        return "array", optional
    for name in ("bytes", "str", "int", "float", "bool", "dict", "list", "tuple"):
        if text.startswith(name):
            return ("list" if name == "tuple" else name), optional
    raise TypeError(f"unsupported message field type {hint!r}")


class Message:
    """Base of all message types: `to_wire()` -> (content, arrays); `from_wire(content, unpacker)`."""

    MSG_TYPE: ClassVar[str] = ""

    def to_wire(self, minor: int = MINOR) -> tuple[dict, list[Array]]:
        """(content, arrays) for a peer speaking 1.`minor`: fields added after that minor are left out."""
        packer = _Packer()
        content: dict[str, Any] = {}
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if field_since(f) > minor:
                continue
            value = getattr(self, f.name)
            kind, _ = _kind(hints[f.name])
            if value is None:
                content[f.name] = None
            elif kind == "array":
                content[f.name] = packer.add(value)
            elif kind == "arrays":
                content[f.name] = {name: packer.add(a) for name, a in value.items()}
            elif kind == "bytes":
                content[f.name] = packer.add(Array("uint8", (len(value),), value))
            elif kind == "list":
                content[f.name] = list(value)
            else:
                content[f.name] = value
        return content, packer.arrays

    @classmethod
    def from_wire(cls, content: dict, unpacker: _Unpacker, sender_minor: int = MINOR) -> Message:
        """The message from its content; unknown fields are refused, unless the sender speaks a higher minor
        (then they are a newer protocol's additions: ignored, logged once per message type and field)."""
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(content) - set(fields))
        if unknown and sender_minor <= MINOR:
            raise _malformed(f"{cls.MSG_TYPE}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
        for name in unknown:
            unpacker.skip(content[name])
            if (cls.MSG_TYPE, name) not in _IGNORED_LOGGED:
                _IGNORED_LOGGED.add((cls.MSG_TYPE, name))
                logger.info("ignoring field %r of %s from a protocol 1.%d peer (this side speaks %s)",
                            name[:60], cls.MSG_TYPE, sender_minor, PROTOCOL_VERSION_STR)
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            where = f"{cls.MSG_TYPE}.{name}"
            if name not in content:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise _malformed(f"{where} is missing")
                continue
            value = content[name]
            kind, optional = _kind(hints[name])
            if value is None:
                if not optional:
                    raise _malformed(f"{where} must not be null")
                kwargs[name] = None
            elif kind == "array":
                kwargs[name] = unpacker.take(value, where)
            elif kind == "arrays":
                if not isinstance(value, dict):
                    raise _malformed(f"{where} must be an object of buffer references")
                kwargs[name] = {str(k): unpacker.take(v, f"{where}.{k}") for k, v in value.items()}
            elif kind == "bytes":
                array = unpacker.take(value, where)
                if array.dtype != "uint8" or len(array.shape) != 1:
                    raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} must be a 1-D uint8 buffer")
                kwargs[name] = bytes(memoryview(array.data))
            else:
                expected = _SCALARS[kind]
                ok = isinstance(value, expected) and not (
                    kind in ("int", "float") and isinstance(value, bool)
                )
                if not ok:
                    raise _malformed(f"{where} must be {kind}, got {type(value).__name__}")
                kwargs[name] = float(value) if kind == "float" else value
        return cls(**kwargs)
