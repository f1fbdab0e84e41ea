"""Engine exceptions: every failure a user can cause raises EngineError with a stable protocol code."""
from __future__ import annotations

import logging
import uuid

from csd_blender.protocol.errors import ErrorCode, ProtocolError

logger = logging.getLogger(__name__)


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

    def __init__(self, message: str, detail: str = "", field: str = "model"):
        super().__init__(ErrorCode.MODEL_MISSING, message, detail, field=field)


class CancelledError(EngineError):
    """The job was cancelled by `should_stop()`."""

    def __init__(self, message: str = "job cancelled"):
        super().__init__(ErrorCode.CANCELLED, message)


class InternalError(EngineError):
    """An engine defect: the client gets the error id and one line, the engine log the traceback.

    Args:
        error_id: the id the log entry carries.
        what: the exception's type name (never its text: it may hold paths or data).
    """

    def __init__(self, error_id: str, what: str):
        super().__init__(
            ErrorCode.INTERNAL,
            f"internal engine error {error_id} ({what}); the engine log has the details under this id",
        )
        self.error_id = error_id


def internal_error(exc: BaseException, context: str) -> InternalError:
    """Log `exc` with its traceback under a fresh error id; return the error to send in its place.

    Call it from an `except` block (the traceback logged is `exc`'s).

    Args:
        exc: the unexpected exception.
        context: what failed, for the log line ("job 1a2b (texture)", "request 3c4d").
    """
    error_id = uuid.uuid4().hex[:12]
    logger.error("internal error %s in %s: %s: %s", error_id, context, type(exc).__name__, exc,
                 exc_info=(type(exc), exc, exc.__traceback__))
    return InternalError(error_id, type(exc).__name__)
