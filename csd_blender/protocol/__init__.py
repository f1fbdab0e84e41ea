"""The wire protocol between the add-on and the engine, its one definition: messages and their codec, error
codes, size limits, job parameters (`params/`), quality presets and endpoints. Standard library only: it may
import nothing else of csd_blender and no bpy, zmq, numpy or torch, so the engine imports it too."""

from .errors import ErrorCode, ProtocolError

__all__ = ["ErrorCode", "ProtocolError"]
from .params import ARRAY_SPECS, GUIDANCE_NAMES, PARAMS, TASK_NAMES, EditParams, GenerateParams, TextureParams

__all__ += ["ARRAY_SPECS", "GUIDANCE_NAMES", "PARAMS", "TASK_NAMES", "EditParams", "GenerateParams", "TextureParams"]
from .codec import Header, check_version, decode, decode_body, decode_header, encode, new_id
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

__all__ += [
    "DTYPE_SIZES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_STR",
    "REPLY_LIMITS",
    "REQUEST_LIMITS",
    "Accepted",
    "Array",
    "Cancel",
    "Cancelled",
    "ErrorReply",
    "Header",
    "Hello",
    "HelloReply",
    "Limits",
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
    "check_version",
    "decode",
    "decode_body",
    "decode_header",
    "encode",
    "new_id",
]
