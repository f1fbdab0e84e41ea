"""Wire limits and the array dtype allow-list: checked before anything is parsed (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB

# dtype name -> item size in bytes. Arrays on the wire are little-endian and C-contiguous.
DTYPE_SIZES: dict[str, int] = {"float32": 4, "int32": 4, "int64": 8, "uint8": 1, "float16": 2}

MAX_ID_CHARS = 128  # msg_id, parent_id, session, job ids
MAX_TOKEN_CHARS = 256
MAX_NDIM = 8


@dataclass(frozen=True)
class Limits:
    """Size limits a decoder enforces (MESSAGE_TOO_LARGE when exceeded).

    Args:
        max_message_bytes: all frames together.
        max_buffer_bytes: any single raw buffer frame.
        max_json_bytes: the header frame and the content frame, each.
        max_buffers: number of raw buffer frames after header and content.
    """

    max_message_bytes: int = 256 * MiB
    max_buffer_bytes: int = 128 * MiB
    max_json_bytes: int = 1 * MiB
    max_buffers: int = 16


# What the engine accepts from clients: a 1M-face mesh (12 MB of faces, 36 MB of UVs) fits easily.
REQUEST_LIMITS = Limits()
# What the client accepts from the engine: results may hold 4096^2 float textures.
REPLY_LIMITS = Limits(
    max_message_bytes=2 * GiB, max_buffer_bytes=1 * GiB, max_json_bytes=16 * MiB, max_buffers=64
)
