"""The wire protocol between the add-on and the engine: standard library only (no bpy, zmq, numpy, torch)."""

from .errors import ErrorCode, ProtocolError

__all__ = ["ErrorCode", "ProtocolError"]
from .jobs import ARRAY_SPECS, GUIDANCE_NAMES, PARAMS, TASK_NAMES, TextureParams
from .generate_params import GenerateParams

__all__ += ["ARRAY_SPECS", "GUIDANCE_NAMES", "PARAMS", "TASK_NAMES", "TextureParams", "GenerateParams"]
from .limits import DTYPE_SIZES, REPLY_LIMITS, REQUEST_LIMITS, Limits
from .messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    PROTOCOL_VERSION_STR,
    Accepted,
    Array,
    Cancel,
    Cancelled,
    ErrorReply,
    Hello,
    HelloReply,
    Message,
    Ping,
    Pong,
    Progress,
    Release,
    Released,
    Result,
    Shutdown,
    Status,
    StatusReply,
    Submit,
)
from .codec import Header, check_version, decode, decode_body, decode_header, encode, new_id

__all__ += [
    "DTYPE_SIZES",
    "REPLY_LIMITS",
    "REQUEST_LIMITS",
    "Limits",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_STR",
    "Accepted",
    "Array",
    "Cancel",
    "Cancelled",
    "ErrorReply",
    "Hello",
    "HelloReply",
    "Message",
    "Ping",
    "Pong",
    "Progress",
    "Release",
    "Released",
    "Result",
    "Shutdown",
    "Status",
    "StatusReply",
    "Submit",
    "Header",
    "check_version",
    "decode",
    "decode_body",
    "decode_header",
    "encode",
    "new_id",
]
