"""A queued job hears its new place when the jobs ahead of it start (Progress stage "queued", queue_position)."""

from __future__ import annotations

import threading
import time

import engine_fakes
import pytest

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import messages as m
from engine.serve.config import ServerConfig
from engine.serve.server import EngineServer

TOKEN = "queue-position-test-token-012345"


@pytest.fixture
def client():
    engine_fakes.register()
    server = EngineServer(ServerConfig(bind="tcp://127.0.0.1:0", token=TOKEN))
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with EngineClient(server.endpoint, TOKEN) as c:
            c.connect(timeout_s=10)
            yield c
    finally:
        server.request_stop()
        thread.join(30)
        engine_fakes.unregister()


def test_queued_jobs_are_told_their_place_as_it_changes(client):
    jobs = [client.submit("sleepy", {"steps": 3, "step_s": 0.05, "seed": i}) for i in range(3)]
    events, deadline = [], time.monotonic() + 30
    while not all(any(isinstance(e, JobResult) and e.job_id == j for e in events) for j in jobs):
        assert time.monotonic() < deadline, events
        events += client.poll()
        time.sleep(0.005)
    accepted = {e.job_id: e.queue_position for e in events if isinstance(e, m.Accepted)}
    assert [accepted[j] for j in jobs] == [0, 1, 2]
    moves = [(e.job_id, e.queue_position) for e in events if isinstance(e, m.Progress) and e.stage == "queued"]
    assert moves == [(jobs[2], 1)]  # the third moved up once the first finished; the second was already next
    status = client.status()
    assert status.pool == {"kind": "local", "workers": 1, "busy": 0, "queued": 0} and status.running == []
