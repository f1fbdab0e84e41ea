"""protocol.endpoints.is_loopback: the one test of which endpoints stay on this machine (add-on and server)."""
from __future__ import annotations

import pytest

from csd_blender.protocol.endpoints import is_loopback


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.1:0", True), ("tcp://127.1.2.3:7", True),
    ("tcp://localhost:1", True), ("tcp://LOCALHOST:1", True), ("tcp://[::1]:5555", True),
    ("ipc:///tmp/csd", True), ("inproc://engine", True),
    ("tcp://10.0.0.2:5555", False), ("tcp://gpu-box:5555", False), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://[::]:5555", False), ("udp://127.0.0.1:5555", False),
    ("tcp://[::1:5555", False), ("127.0.0.1:5555", False), ("", False),
])
def test_is_loopback(endpoint, local):
    assert is_loopback(endpoint) is local
