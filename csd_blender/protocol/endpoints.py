"""ZeroMQ endpoints: which ones stay on this machine (standard library only).

The add-on refuses a remote engine without Blender's online access, and the engine's server refuses to bind
beyond loopback without CurveZMQ keys: both ask `is_loopback`.
"""
from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "::1"})


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine: ipc://, inproc://, or tcp:// to localhost, 127.x or ::1.

    A wildcard bind ("tcp://*:5555", "tcp://0.0.0.0:5555") and any other host or transport is not.

    Args:
        endpoint: e.g. "tcp://127.0.0.1:5555".
    """
    scheme, _, _ = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    try:
        host = urlsplit(endpoint.replace("*", "0")).hostname or ""
    except ValueError:                     # e.g. an unbalanced "[" in the host
        return False
    return host in LOOPBACK_HOSTS or host.startswith("127.")
