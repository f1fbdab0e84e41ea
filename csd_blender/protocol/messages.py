"""Typed message dataclasses: one class per `msg_type`, with JSON content and raw array buffers (stdlib only).

A message becomes `content` (a JSON object) plus a list of `Array` buffers. Fields typed `Array`,
`dict[str, Array]` or `bytes` travel as buffers and appear in the content as a `BufferRef`
`{"index": i, "dtype": "...", "shape": [...]}` (pyzmq `send_array` style). `bytes` fields (PNG previews) are
1-D uint8 buffers. Nothing is ever pickled.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from .errors import ErrorCode, ProtocolError
from .limits import DTYPE_SIZES, MAX_NDIM

PROTOCOL_VERSION: tuple[int, int] = (1, 0)
PROTOCOL_VERSION_STR = f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}"


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

    def to_wire(self) -> tuple[dict, list[Array]]:
        packer = _Packer()
        content: dict[str, Any] = {}
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
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
    def from_wire(cls, content: dict, unpacker: _Unpacker) -> Message:
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(content) - set(fields))
        if unknown:
            raise _malformed(f"{cls.MSG_TYPE}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
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


# --- handshake -------------------------------------------------------------------------------------------


@dataclass
class Hello(Message):
    """Client -> engine: first message after connecting. The header's version is what gets checked."""

    MSG_TYPE: ClassVar[str] = "hello"
    client: str = ""
    client_version: str = ""


@dataclass
class HelloReply(Message):
    """Engine -> client: versions, the device and its memory, and what this engine can do.

    Args:
        protocol_version: "major.minor" the engine speaks.
        engine_version: the engine package version.
        device: "cpu" or "cuda:N"; device_name: human-readable name.
        memory_total_bytes / memory_free_bytes: of the device (system RAM on CPU).
        tasks: registered task names; guidance: guidance names; priors: priors available locally;
        backends: optional accelerators present, e.g. {"nvdiffrast": false, "tinycudann": false}.
    """

    MSG_TYPE: ClassVar[str] = "hello_reply"
    protocol_version: str
    engine_version: str
    device: str
    device_name: str = ""
    memory_total_bytes: int = 0
    memory_free_bytes: int = 0
    tasks: list = field(default_factory=list)
    guidance: list = field(default_factory=list)
    priors: list = field(default_factory=list)
    backends: dict = field(default_factory=dict)


# --- jobs ------------------------------------------------------------------------------------------------


@dataclass
class Submit(Message):
    """Client -> engine: run `task` with `params` (a JSON object, see jobs.PARAMS) on named arrays.

    The job id is the submit message's msg_id.
    """

    MSG_TYPE: ClassVar[str] = "submit"
    task: str
    params: dict = field(default_factory=dict)
    arrays: dict[str, Array] = field(default_factory=dict)


@dataclass
class Accepted(Message):
    """Engine -> client: the job passed validation; `queue_position` jobs run before it (0: starts now)."""

    MSG_TYPE: ClassVar[str] = "accepted"
    job_id: str
    queue_position: int = 0


@dataclass
class Progress(Message):
    """Engine -> client: a progress report; `preview_png` is a small PNG of a fixed view (or None).

    loss and eta_s are None when unknown. While the job waits, stage "queued" events carry `queue_position`
    (1: it starts next), sent whenever its place changes.
    """

    MSG_TYPE: ClassVar[str] = "progress"
    job_id: str
    stage: str
    step: int
    total: int
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    preview_png: bytes | None = None
    queue_position: int | None = None


@dataclass
class Result(Message):
    """Engine -> client: the finished job: JSON `meta` and named result arrays."""

    MSG_TYPE: ClassVar[str] = "result"
    job_id: str
    meta: dict = field(default_factory=dict)
    arrays: dict[str, Array] = field(default_factory=dict)


@dataclass
class ErrorReply(Message):
    """Engine -> client: a request or job failed. `code` is an `ErrorCode` value; `job_id` is None when the
    failure is not tied to a job (e.g. a malformed message).

    The engine never sends a traceback (`traceback` stays "" and is kept for wire compatibility): an `internal`
    error carries `error_id`, under which the engine log holds the traceback.
    """

    MSG_TYPE: ClassVar[str] = "error"
    job_id: str | None
    code: str
    message: str
    detail: str = ""
    traceback: str = ""
    field: str | None = None
    error_id: str = ""

    @classmethod
    def from_exception(
        cls, exc: ProtocolError, job_id: str | None = None, traceback: str = ""
    ) -> ErrorReply:
        """The reply for `exc`; its message and field become one line of printable text (a client's own
        newlines, control characters and lone surrogates are escaped)."""
        field = None if exc.field is None else _one_line(exc.field)
        return cls(
            job_id, exc.code.value, _one_line(exc.message), exc.detail, traceback, field, getattr(exc, "error_id", "")
        )

    def to_exception(self) -> ProtocolError:
        """A ProtocolError with this code (INTERNAL for a code this side does not know)."""
        try:
            code = ErrorCode(self.code)
        except ValueError:
            code = ErrorCode.INTERNAL
        err = ProtocolError(code, self.message, self.detail, self.field)
        err.traceback = self.traceback  # type: ignore[attr-defined]
        err.error_id = self.error_id  # type: ignore[attr-defined]
        return err


def _one_line(text: str) -> str:
    """`text` with control characters and lone surrogates escaped (\\n, \\x07, \\ud800): one printable line."""
    unsafe = [c for c in set(text) if c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff"]
    for c in unsafe:
        text = text.replace(c, repr(c)[1:-1])
    return text


@dataclass
class Cancel(Message):
    """Client -> engine: stop a queued or running job (takes effect within one optimisation step)."""

    MSG_TYPE: ClassVar[str] = "cancel"
    job_id: str


@dataclass
class Cancelled(Message):
    """Engine -> client: the job stopped without a result."""

    MSG_TYPE: ClassVar[str] = "cancelled"
    job_id: str


# --- engine management -----------------------------------------------------------------------------------


@dataclass
class Release(Message):
    """Client -> engine: drop loaded models and free device memory (ENGINE_BUSY while a job runs or waits)."""

    MSG_TYPE: ClassVar[str] = "release"


@dataclass
class Released(Message):
    """Engine -> client: what was released and the device memory now in use (bytes; 0 on CPU)."""

    MSG_TYPE: ClassVar[str] = "released"
    priors: list = field(default_factory=list)
    memory_allocated_bytes: int = 0


@dataclass
class Ping(Message):
    """Client -> engine: heartbeat."""

    MSG_TYPE: ClassVar[str] = "ping"


@dataclass
class Pong(Message):
    """Engine -> client: heartbeat answer; `busy` is true while a job runs."""

    MSG_TYPE: ClassVar[str] = "pong"
    busy: bool = False


@dataclass
class Status(Message):
    """Client -> engine: ask what the engine is doing."""

    MSG_TYPE: ClassVar[str] = "status"


@dataclass
class StatusReply(Message):
    """Engine -> client: the asking client's running job ({job_id, task, stage, step, total, elapsed_s} or
    None), its queued job ids in order, the loaded priors and the device. Other clients' jobs appear only as
    counts (`others_running`, `others_queued`); an admin connection sees every job in `current`/`queue`
    (and zero counts). `running` lists all of the asker's running jobs (a shared engine runs several at once;
    `current` is the first); `pool` is {"kind": "local" or "ray", "workers", "busy", "queued"} for the whole
    engine."""

    MSG_TYPE: ClassVar[str] = "status_reply"
    current: dict | None = None
    queue: list = field(default_factory=list)
    priors: list = field(default_factory=list)
    device: str = ""
    others_running: int = 0
    others_queued: int = 0
    running: list = field(default_factory=list)
    pool: dict | None = None


@dataclass
class Shutdown(Message):
    """Client -> engine: cancel the running job, close the sockets and exit with code 0."""

    MSG_TYPE: ClassVar[str] = "shutdown"


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.MSG_TYPE: cls
    for cls in (
        Hello,
        HelloReply,
        Submit,
        Accepted,
        Progress,
        Result,
        ErrorReply,
        Cancel,
        Cancelled,
        Release,
        Released,
        Ping,
        Pong,
        Status,
        StatusReply,
        Shutdown,
    )
}
