"""The wire protocol between the add-on and the engine: standard library only (no bpy, zmq, numpy, torch)."""
from .errors import ErrorCode, ProtocolError

__all__ = ["ErrorCode", "ProtocolError"]
from .jobs import ARRAY_SPECS, PARAMS, TASK_NAMES, TextureParams

__all__ += ["ARRAY_SPECS", "PARAMS", "TASK_NAMES", "TextureParams"]
