"""What the engine says of itself: the handshake reply (versions, device, tasks, priors, backends) and the
endpoint file a launcher reads."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from csd_blender.protocol.limits import Limits
from csd_blender.protocol.messages import MINOR, HelloReply, StatusReply, version_str
from csd_blender.protocol.params.edit import EDIT_TEXTURE_DTYPES, EDIT_TEXTURE_SIDE

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


def request_limits(limits: Limits) -> dict:
    """What a request may hold, as HelloReply.limits tells a client (protocol 1.1)."""
    return {"max_message_bytes": limits.max_message_bytes, "max_buffer_bytes": limits.max_buffer_bytes,
            "max_json_bytes": limits.max_json_bytes, "max_buffers": limits.max_buffers,
            "edit_texture_side": list(EDIT_TEXTURE_SIDE), "edit_texture_dtypes": list(EDIT_TEXTURE_DTYPES)}


def hello_reply(device: str, limits: Limits | None = None, workers: list | None = None,
                minor: int = MINOR) -> HelloReply:
    """The handshake reply for an engine running on `device`.

    Args:
        device: the engine's device.
        limits: its request limits (HelloReply.limits).
        workers: one {"device", "device_name"} per worker (None: the engine itself, on `device`).
        minor: the protocol minor both sides speak (the reply names it as `protocol_version`).
    """
    info = device_info(device)
    name, label = info.device, info.label
    if workers is None:
        workers = [{"device": info.device, "device_name": info.label}]
    else:  # a Ray pool: the actors' devices, not the head's (1.0 clients see only `device`)
        kinds = sorted({w["device"] for w in workers})
        name = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "ray (actors starting)")
        label = f"Ray pool of {len(workers)}: " + ", ".join(sorted({w["device_name"] for w in workers}))
    return HelloReply(version_str(minor), __version__, name, label, info.total_bytes,
                      info.free_bytes, TASKS.names(), GUIDANCE.names(), available_priors(), backends(),
                      request_limits(limits or Limits()), list(workers))


def status_reply(server: Any, owner: Any, admin: bool) -> StatusReply:
    """The status reply of an EngineServer for one client: its running jobs and queue, other clients' jobs only as
    counts (all of them for an admin), and the pool's size, load and (a Ray pool's) actors' devices."""
    mine = [
        dict(r.status) or {"job_id": r.job_id, "task": r.spec.name, "stage": "starting"}
        for r in server.active.values() if admin or r.owner == owner
    ]
    queue = [r.job_id for r in server.pending if admin or r.owner == owner]
    pool = {"kind": server.worker.kind, "workers": server.slots, "busy": len(server.active),
            "queued": len(server.pending)}
    devices = server.worker.devices()
    if devices is not None:
        pool["devices"] = [d["device"] for d in devices]
    return StatusReply(
        mine[0] if mine else None, queue, server.worker.loaded_priors, server.config.device,
        len(server.active) - len(mine), len(server.pending) - len(queue), mine, pool,
    )
