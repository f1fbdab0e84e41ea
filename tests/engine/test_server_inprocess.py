"""An in-process server (a thread) running the fake `sleepy` task: start-up rules, CurveZMQ, lifecycle."""

from __future__ import annotations

import json
import logging
import threading
import time

import engine_fakes
import numpy as np
import pytest
import zmq
import zmq.auth

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from engine.serve.config import ServerConfig
from engine.serve.server import EngineServer

TOKEN = "security-test-token-0123456789"


def test_non_loopback_bind_needs_curve_keys():
    with pytest.raises(ValueError, match="CurveZMQ"):
        EngineServer(ServerConfig(bind="tcp://0.0.0.0:0", token=TOKEN))


def test_short_token_is_refused():
    with pytest.raises(ValueError, match="token"):
        EngineServer(ServerConfig(token="short"))


@pytest.fixture(scope="module", autouse=True)
def _sleepy_task_only_here():
    """The fake task is registered by the tests that need it and removed afterwards: the registries must hold
    only real tasks for every other test (test_boundaries compares them with the protocol's names)."""
    yield
    engine_fakes.unregister()


@pytest.fixture
def curve_server(tmp_path):
    engine_fakes.register()
    keys = tmp_path / "keys"
    keys.mkdir()
    server_public_file, _ = zmq.auth.create_certificates(str(keys), "server")
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    endpoint_file = tmp_path / "endpoint.json"
    server = EngineServer(
        ServerConfig(
            bind="tcp://127.0.0.1:0", token=TOKEN, curve_dir=str(keys), endpoint_file=str(endpoint_file)
        )
    )
    server.bind()
    codes = []
    thread = threading.Thread(target=lambda: codes.append(server.serve_forever()), daemon=True)
    thread.start()
    yield server, server_public, endpoint_file
    server.request_stop()
    thread.join(10)
    assert codes == [0]


def test_curve_server_answers_only_encrypted_clients(curve_server):
    server, server_public, endpoint_file = curve_server
    info = json.loads(endpoint_file.read_text())
    assert info["endpoint"] == server.endpoint and info["protocol_version"] == m.PROTOCOL_VERSION_STR
    with EngineClient(server.endpoint, TOKEN, server_public_key=server_public) as client:
        assert "sleepy" in client.connect(timeout_s=10).tasks
        result = client.wait(client.submit("sleepy", {"steps": 2, "step_s": 0.01, "seed": 3}), timeout_s=10)
        np.testing.assert_array_equal(
            result.arrays["texture"], np.random.default_rng(3).random((16, 16, 3), dtype=np.float32)
        )
    with EngineClient(server.endpoint, TOKEN) as plain:  # no key: the handshake never completes
        with pytest.raises(ProtocolError) as info:
            plain.connect(timeout_s=1.0)
        assert info.value.code == ErrorCode.ENGINE_DIED
    with EngineClient(server.endpoint, "wrong-token-0123456789", server_public_key=server_public) as intruder:
        with pytest.raises(ProtocolError) as info:
            intruder.connect(timeout_s=10)
        assert info.value.code == ErrorCode.UNAUTHORIZED


def test_worker_failures_become_error_replies_and_the_server_keeps_serving(curve_server, caplog):
    server, server_public, _ = curve_server
    caplog.set_level(logging.ERROR, logger="engine")
    with EngineClient(server.endpoint, TOKEN, server_public_key=server_public) as client:
        client.connect(timeout_s=10)
        expected = {
            "engine_error": ErrorCode.MODEL_MISSING,
            "oom": ErrorCode.OUT_OF_MEMORY,
            "crash": ErrorCode.INTERNAL,
        }
        for fail, code in expected.items():
            with pytest.raises(ProtocolError) as info:
                client.wait(client.submit("sleepy", {"steps": 2, "step_s": 0.01, "fail": fail}), timeout_s=10)
            assert info.value.code == code, fail
            assert info.value.traceback == "", "a reply never carries a traceback"
            if fail == "crash":  # the client gets an id and one line; the log has the traceback under that id
                error_id = info.value.error_id
                assert error_id and error_id in info.value.message and "\n" not in info.value.message
                assert "/" not in info.value.message and "fake crash" not in info.value.message
                logged = [r for r in caplog.records if error_id in r.getMessage()]
                assert logged and "ZeroDivisionError: fake crash" in logged[0].exc_text
            if fail == "oom":
                assert "lower" in info.value.message
        assert client.wait(client.submit("sleepy", {"steps": 1, "step_s": 0.01}), timeout_s=10).arrays


def _events_until(client: EngineClient, job: str, kinds: tuple, timeout_s: float = 10.0) -> list:
    events: list = []
    deadline = time.monotonic() + timeout_s
    while not any(isinstance(e, kinds) and getattr(e, "job_id", None) == job for e in events):
        assert time.monotonic() < deadline, events
        events += client.poll()
        time.sleep(0.005)
    return events


def test_progress_is_throttled_but_previews_and_the_last_step_always_go(curve_server):
    server, server_public, _ = curve_server
    with EngineClient(server.endpoint, TOKEN, server_public_key=server_public) as client:
        client.connect(timeout_s=10)
        job = client.submit("sleepy", {"steps": 60, "step_s": 0.01, "preview_every": 0})
        events = _events_until(client, job, (JobResult,))
        steps = [e.step for e in events if isinstance(e, m.Progress) and e.stage == "optimising"]
        elapsed = [e.elapsed_s for e in events if isinstance(e, m.Progress)][-1]
        assert steps[-1] == 60 and len(steps) <= 5 * elapsed + 3, (steps, elapsed)
        job = client.submit("sleepy", {"steps": 20, "step_s": 0.01, "preview_every": 4})
        events = _events_until(client, job, (JobResult,))
        previews = [e.step for e in events if isinstance(e, m.Progress) and e.preview_png]
        assert previews == [4, 8, 12, 16, 20]


def test_queued_and_running_jobs_cancel_and_shutdown_is_graceful(tmp_path):
    engine_fakes.register()
    server = EngineServer(ServerConfig(bind="tcp://127.0.0.1:0", token=TOKEN))
    server.bind()
    codes = []
    thread = threading.Thread(target=lambda: codes.append(server.serve_forever()), daemon=True)
    thread.start()
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=10)
        running = client.submit("sleepy", {"steps": 10_000, "step_s": 0.01})
        queued = client.submit("sleepy", {"steps": 10_000, "step_s": 0.01})
        last = client.submit("sleepy", {"steps": 10_000, "step_s": 0.01})
        events = _events_until(client, last, (m.Accepted,))
        assert [e.queue_position for e in events if isinstance(e, m.Accepted)] == [0, 1, 2]
        with pytest.raises(ProtocolError) as info:
            client.release()  # answered at once, not after the jobs
        assert info.value.code == ErrorCode.ENGINE_BUSY
        client.cancel(queued)  # never started: cancelled at once
        _events_until(client, queued, (m.Cancelled,))
        assert client.status().queue == [last]
        client.shutdown()  # cancels the running job and the queue, then exits 0
        events = _events_until(client, last, (m.Cancelled,))
        events += _events_until(client, running, (m.Cancelled,))
        assert not any(isinstance(e, (JobResult, m.ErrorReply)) for e in events)
    thread.join(10)
    assert codes == [0] and not thread.is_alive()
