"""What the engine says of itself: the handshake reply (versions, device, tasks, priors, backends) and the
endpoint file a launcher reads."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from csd_blender.protocol.messages import PROTOCOL_VERSION_STR, HelloReply

from .. import __version__
from .._optional import backends
from ..device_info import device_info
from ..registry import GUIDANCE, TASKS

logger = logging.getLogger(__name__)
TOY_PRIOR = Path(__file__).resolve().parents[1] / "assets" / "toy_prior"


def write_endpoint_file(path: str, info: dict) -> None:
    """Write JSON to `path` atomically (temporary file in the same folder + os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".endpoint-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


def available_priors() -> list[str]:
    """Priors usable without a download (engine.priors.available_priors when it exists)."""
    try:
        from .. import priors

        listing = getattr(priors, "available_priors", None)
        if callable(listing):
            return list(listing())
    except Exception as exc:  # noqa: BLE001 - a broken prior package must not stop the handshake
        logger.warning("listing priors failed: %s", exc)
    return ["toy"] if TOY_PRIOR.is_dir() else []


def hello_reply(device: str) -> HelloReply:
    """The handshake reply for an engine running on `device`."""
    info = device_info(device)
    return HelloReply(PROTOCOL_VERSION_STR, __version__, info.device, info.label, info.total_bytes,
                      info.free_bytes, TASKS.names(), GUIDANCE.names(), available_priors(), backends())
