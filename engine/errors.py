"""Engine exceptions: every failure a user can cause raises EngineError with a stable protocol code."""
from __future__ import annotations

from csd_blender.protocol.errors import ErrorCode, ProtocolError


class EngineError(ProtocolError):
    """A user-facing engine error.

    Args:
        code: stable `ErrorCode` (or its string value).
        message: one line naming the problem and, where there is one, the field (`steps must be > 0, got 0`).
        detail: optional longer text.
        field: the request field at fault, when there is one.
    """


class MeshError(EngineError):
    """A mesh that cannot be used (NaN vertices, bad indices, no faces, unreadable file)."""

    def __init__(self, message: str, detail: str = "", field: str | None = "mesh"):
        super().__init__(ErrorCode.INVALID_MESH, message, detail, field)


class RequestError(EngineError):
    """A request parameter out of range or of the wrong type; the message names the field."""

    def __init__(self, field: str, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST):
        super().__init__(code, f"{field}: {message}", field=field)


class ModelMissingError(EngineError):
    """A diffusion model that is neither a local folder nor in the Hugging Face cache."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(ErrorCode.MODEL_MISSING, message, detail, field="model")


class CancelledError(EngineError):
    """The job was cancelled by `should_stop()`."""

    def __init__(self, message: str = "job cancelled"):
        super().__init__(ErrorCode.CANCELLED, message)
