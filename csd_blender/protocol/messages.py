"""Typed message dataclasses: one class per `msg_type`, with JSON content and raw array buffers (stdlib only).

A message becomes `content` (a JSON object) plus a list of `Array` buffers. Fields typed `Array`,
`dict[str, Array]` or `bytes` travel as buffers and appear in the content as a `BufferRef`
`{"index": i, "dtype": "...", "shape": [...]}` (pyzmq `send_array` style). `bytes` fields (PNG previews) are
1-D uint8 buffers. Nothing is ever pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .errors import ErrorCode, ProtocolError
from .wire import (  # noqa: F401 - Array, Message and the version names are this module's public names too
    MINOR,
    PROTOCOL_VERSION,
    PROTOCOL_VERSION_STR,
    Array,
    Message,
    _Unpacker,
    negotiate,
    since,
    version_str,
)

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
        limits (1.1): what a request may hold, so a client refuses too large input at once, naming the limit:
            {"max_message_bytes", "max_buffer_bytes", "max_json_bytes", "max_buffers", "edit_texture_side": [lo, hi],
            "edit_texture_dtypes": [...]}.
        workers (1.1): one {"device", "device_name"} per worker that runs jobs (each Ray actor of `serve --ray`;
            the engine itself otherwise).

    `protocol_version` is the version both sides speak (the lower minor of the client's hello header and the
    engine's), and the reply's header carries it too.
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
    limits: dict = field(default_factory=dict, metadata=since(1))
    workers: list = field(default_factory=list, metadata=since(1))


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
