"""Messages to and from ZeroMQ multipart frames [header_json, content_json, *buffers]; stdlib only, no pickle.

The header is `{msg_id, msg_type, version, parent_id, token, session}`. Decoding checks the size limits
before parsing anything, then the header, then (in `decode_body`) the protocol version, the message type
and the content. Every failure is a `ProtocolError` with a stable code and a specific message.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ErrorCode, ProtocolError
from .limits import MAX_ID_CHARS, MAX_TOKEN_CHARS, REQUEST_LIMITS, Limits
from .messages import (
    MESSAGE_TYPES,
    MINOR,
    PROTOCOL_VERSION,
    PROTOCOL_VERSION_STR,
    Message,
    _Unpacker,
    version_str,
)

# canonical "major.minor": no sign, no leading zeros, no surrounding space or newline ("01.0" is not "1.0")
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")


@dataclass(frozen=True)
class Header:
    """The first frame of every message.

    Args:
        msg_id: unique id of this message (a submit's msg_id is the job id).
        msg_type: one of messages.MESSAGE_TYPES.
        version: protocol "major.minor" of the sender.
        parent_id: the msg_id this message answers (None for requests).
        token: the engine's access token (requests only; "" in replies).
        session: the sender's session id.
    """

    msg_id: str
    msg_type: str
    version: str = PROTOCOL_VERSION_STR
    parent_id: str | None = None
    token: str = ""
    session: str = ""


def new_id() -> str:
    """A fresh random message / session id."""
    return uuid.uuid4().hex


def json_safe(value: Any, path: str, replaced: list[str]) -> Any:
    """A copy of a JSON-like value that `json.dumps(allow_nan=False)` accepts.

    Non-finite floats become None and their paths are appended to `replaced`; other real and integral numbers
    (numpy scalars, for instance) become float / int; tuples become lists. Other types are left for the encoder
    to refuse.

    Args:
        value: a JSON-like value (dict, list, str, number, bool, None).
        path: where `value` sits, e.g. "result.meta" (used in `replaced`).
        replaced: collects the paths of the values replaced by None.
    """
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: json_safe(v, f"{path}.{k}", replaced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{path}[{i}]", replaced) for i, v in enumerate(value)]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            replaced.append(path)
            return None
        return value
    return value


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf: a number JSON cannot carry back
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """object_pairs_hook: a key given twice is an error (json would silently keep the last one)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r:.60}")
        out[key] = value
    return out


def _loads(view: memoryview, what: str) -> Any:
    try:
        text = bytes(view).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"{what} frame is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=unique_keys
        )
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"{what} frame is not valid JSON: {exc}"[:300]
        ) from None


def encode(
    message: Message,
    *,
    msg_id: str | None = None,
    parent_id: str | None = None,
    token: str = "",
    session: str = "",
    replaced: list[str] | None = None,
    minor: int = MINOR,
) -> tuple[list, Header]:
    """Turn a message into frames.

    Args:
        message: any `Message` instance.
        msg_id: defaults to a fresh id.
        parent_id: the request this message answers.
        token: the engine's token (clients), "" for replies.
        session: the sender's session id.
        replaced: when given, the content is made JSON-safe first (`json_safe`: NaN/inf become null) and the
            paths of the replaced values are appended here; without it a non-finite float raises ValueError.
        minor: the protocol minor the receiver speaks (the handshake's `negotiate`): the header says
            "major.minor" of it and fields added after it are left out.

    Returns:
        (frames, header): frames are bytes for header/content and the arrays' own buffers (zero-copy).
    """
    minor = min(int(minor), MINOR)
    header = Header(msg_id or new_id(), message.MSG_TYPE, version_str(minor), parent_id, token, session)
    content, arrays = message.to_wire(minor)
    if replaced is not None:
        content = json_safe(content, message.MSG_TYPE, replaced)
    header_json = _dumps(
        {
            "msg_id": header.msg_id,
            "msg_type": header.msg_type,
            "version": header.version,
            "parent_id": header.parent_id,
            "token": header.token,
            "session": header.session,
        }
    )
    return [header_json, _dumps(content), *[a.data for a in arrays]], header


def _views(frames: Sequence[Any]) -> list[memoryview]:
    try:
        return [memoryview(f) for f in frames]
    except TypeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"a frame is not a byte buffer: {exc}") from None


def check_limits(frames: Sequence[Any], limits: Limits = REQUEST_LIMITS) -> list[memoryview]:
    """Check frame count and sizes; return the frames as memoryviews. Raises MALFORMED / MESSAGE_TOO_LARGE."""
    if len(frames) < 2:
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            f"truncated multipart message: {len(frames)} frame(s), need a header and a content frame",
        )
    if len(frames) - 2 > limits.max_buffers:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"{len(frames) - 2} buffer frames; the limit is {limits.max_buffers}"
        )
    views = _views(frames)
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"message is {total} bytes; the limit is {limits.max_message_bytes}"
        )
    for name, view in (("header", views[0]), ("content", views[1])):
        if view.nbytes > limits.max_json_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"{name} frame is {view.nbytes} bytes; the limit is {limits.max_json_bytes}",
            )
    for i, view in enumerate(views[2:]):
        if view.nbytes > limits.max_buffer_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"buffer {i} is {view.nbytes} bytes; the limit is {limits.max_buffer_bytes}",
            )
    return views


def _text(
    obj: dict, key: str, *, optional: bool = False, limit: int = MAX_ID_CHARS, default: str = ""
) -> Any:
    value = obj.get(key, None if optional else default)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            f"header.{key} must be a string of at most {limit} characters, got {value!r:.60}",
        )
    if not is_text(value):
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"header.{key} is not valid text (it holds a lone surrogate)"
        )
    return value


def is_text(value: str) -> bool:
    """False when `value` cannot be encoded as UTF-8 (a lone surrogate from a JSON \\udXXX escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_header(frames: Sequence[Any], limits: Limits = REQUEST_LIMITS) -> Header:
    """Check limits and parse the header frame (not the version, not the content)."""
    views = check_limits(frames, limits)
    obj = _loads(views[0], "header")
    if not isinstance(obj, dict):
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"header must be a JSON object, got {type(obj).__name__}"
        )
    for key in ("msg_id", "msg_type", "version"):
        if key not in obj:
            raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"header.{key} is missing")
    msg_id = _text(obj, "msg_id")
    if not msg_id:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "header.msg_id must not be empty")
    return Header(
        msg_id=msg_id,
        msg_type=_text(obj, "msg_type", limit=64),
        version=_text(obj, "version", limit=16),
        parent_id=_text(obj, "parent_id", optional=True),
        token=_text(obj, "token", limit=MAX_TOKEN_CHARS),
        session=_text(obj, "session"),
    )


def peek_msg_id(frames: Sequence[Any], limits: Limits = REQUEST_LIMITS) -> str | None:
    """Best effort: the msg_id of a message that failed to decode (so an error reply can name its parent)."""
    return peek_header(frames, limits)[0]


def peek_header(frames: Sequence[Any], limits: Limits = REQUEST_LIMITS) -> tuple[str | None, str | None]:
    """Best effort: (msg_id, msg_type) of a message that failed to decode, e.g. one too large to accept, so the
    error reply can name its parent and, for a submit, its job (the client then closes that job at once).
    Only the header frame is read, and only when it is within the JSON limit; either is None when unreadable."""
    try:
        view = memoryview(frames[0])
        if view.nbytes > limits.max_json_bytes:
            return None, None
        header = json.loads(bytes(view).decode("utf-8"))
        msg_id, msg_type = header.get("msg_id"), header.get("msg_type")
    except Exception:  # noqa: BLE001 - anything unparsable simply has no id
        return None, None
    ok = isinstance(msg_id, str) and 0 < len(msg_id) <= MAX_ID_CHARS and is_text(msg_id)
    return (msg_id if ok else None), (msg_type if ok and isinstance(msg_type, str) and len(msg_type) <= 64 else None)


def check_version(version: str) -> tuple[int, int]:
    """Parse "major.minor"; a different major than PROTOCOL_VERSION raises PROTOCOL_MISMATCH naming both."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if not match:
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"header.version must be 'major.minor', got {version!r}"
        )
    major, minor = int(match.group(1)), int(match.group(2))
    if major != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            ErrorCode.PROTOCOL_MISMATCH,
            f"protocol version {version} of the other side is incompatible with "
            f"{PROTOCOL_VERSION_STR} of this side (major versions differ); "
            "update the add-on or the engine so they match",
        )
    return major, minor


def peek_minor(version: str) -> int:
    """The minor of a "major.minor" header version, 0 when it is not one (decode_body then refuses it)."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    return int(match.group(2)) if match else 0


def decode_body(header: Header, frames: Sequence[Any]) -> Message:
    """Check the version and the message type, then build the message from the content and buffers."""
    _, sender_minor = check_version(header.version)
    cls = MESSAGE_TYPES.get(header.msg_type)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown msg_type {header.msg_type!r}")
    views = _views(frames)
    content = _loads(views[1], "content")
    if not isinstance(content, dict):
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, f"content must be a JSON object, got {type(content).__name__}"
        )
    unpacker = _Unpacker(views[2:])
    message = cls.from_wire(content, unpacker, sender_minor)
    unpacker.check_all_used()
    return message


def decode(frames: Sequence[Any], limits: Limits = REQUEST_LIMITS) -> tuple[Header, Message]:
    """Frames to (header, message); raises ProtocolError on any problem."""
    header = decode_header(frames, limits)
    return header, decode_body(header, frames)
