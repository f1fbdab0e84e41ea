"""Stable error codes shared by the engine, the client and the add-on (standard library only)."""
from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Stable, machine-readable error codes. Never rename a value: the add-on branches on them."""

    # transport / protocol
    MALFORMED_MESSAGE = "malformed_message"      # undecodable frames, bad JSON, truncated multipart
    PROTOCOL_MISMATCH = "protocol_mismatch"      # different protocol major version
    UNAUTHORIZED = "unauthorized"                # missing or wrong token
    MESSAGE_TOO_LARGE = "message_too_large"      # over the size limits
    UNKNOWN_MESSAGE = "unknown_message"          # unknown msg_type
    # request validation
    BAD_REQUEST = "bad_request"                  # a parameter out of range, wrong type, unknown field
    UNKNOWN_TASK = "unknown_task"
    BAD_ARRAY = "bad_array"                      # dtype/shape/length mismatch between header and buffer
    INVALID_MESH = "invalid_mesh"                # NaN vertices, indices out of range, no usable faces
    MESH_TOO_LARGE = "mesh_too_large"
    BAD_PROMPT = "bad_prompt"                    # empty, too long, not UTF-8, words outside the vocabulary
    NO_TEXTURE = "no_texture"                    # edit: the object has no base-colour image texture
    NO_UVS = "no_uvs"                            # edit: the object has no UV map
    UV_TEXTURE_MISMATCH = "uv_texture_mismatch"  # edit: UVs outside the texture's square, or a UV map with no area
    BAD_MASK = "bad_mask"                        # region jobs: an empty mask, bad values, a size that does not fit
    UNKNOWN_JOB = "unknown_job"
    # models and resources
    MODEL_MISSING = "model_missing"
    OUT_OF_MEMORY = "out_of_memory"
    # lifecycle
    CANCELLED = "cancelled"
    ENGINE_DIED = "engine_died"                  # raised client-side when the heartbeat fails
    ENGINE_BUSY = "engine_busy"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """An error that crosses the wire: a stable code, a one-line message and optional detail."""

    def __init__(self, code: ErrorCode | str, message: str, detail: str = "", field: str | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.detail = detail
        self.field = field

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"
