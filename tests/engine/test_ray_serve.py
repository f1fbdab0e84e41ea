"""`serve --ray`: a shared engine runs two clients' jobs at once on two Ray actors (local runtime, two CPUs);
each client gets only its own progress and result, a cancel stops only its own job, a waiting job hears its
queue position, and `status` reports the pool."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ray")

from ray_runtime import local_ray
from test_server import ARRAYS, params

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import messages as m
from engine.serve.config import ServerConfig
from engine.serve.server import EngineServer

TOKEN = "ray-pool-test-token-0123456789"
USES_RAY = True  # conftest.py shuts the shared runtime (tests/ray_runtime.py) down after the last Ray module


@pytest.fixture(scope="module")
def server():
    from engine.tasks import load_registries

    load_registries()
    local_ray()
    engine = EngineServer(ServerConfig(bind="tcp://127.0.0.1:0", token=TOKEN, ray_address="local",
                                       gpus_per_worker=0, cpus_per_worker=1))
    engine.bind()
    assert engine.slots == 2 and len(engine.serve.local_worker.wait_ready()) == 2
    codes: list = []
    thread = threading.Thread(target=lambda: codes.append(engine.serve_forever()), daemon=True)
    thread.start()
    yield engine
    engine.request_stop()
    thread.join(30)
    assert codes == [0]


class Recorder:
    """Polls several clients from this thread (a ZeroMQ socket is not thread-safe) and keeps every client's
    events with the time they arrived."""

    def __init__(self, **clients: EngineClient):
        self.clients = clients
        self.events: dict[str, list] = {name: [] for name in clients}

    def pump(self) -> None:
        for name, client in self.clients.items():
            now = time.monotonic()
            self.events[name] += [(now, event) for event in client.poll()]

    def wait(self, name: str, predicate, timeout_s: float = 120.0):
        """(arrival time, event) of the first event of client `name` that matches `predicate`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            for stamp, event in self.events[name]:
                if predicate(event):
                    return stamp, event
            time.sleep(0.01)
        raise AssertionError(f"timed out; {name} got {[type(e).__name__ for _, e in self.events[name]]}")


def _optimising(job_id):
    return lambda e: isinstance(e, m.Progress) and e.job_id == job_id and e.stage == "optimising" and e.step > 0


def test_two_clients_jobs_run_at_once_and_stay_apart(server):
    with EngineClient(server.endpoint, TOKEN) as a, EngineClient(server.endpoint, TOKEN) as b:
        a.connect(timeout_s=10)
        b.connect(timeout_s=10)
        rec = Recorder(a=a, b=b)
        long_job = a.submit("texture", params("toy", steps=5000, seed=1), ARRAYS)  # cancelled below
        b_job = b.submit("texture", params("toy", steps=60, seed=2), ARRAYS)
        a_start, _ = rec.wait("a", _optimising(long_job))
        b_start, _ = rec.wait("b", _optimising(b_job))
        status = a.status()
        assert status.pool == {"kind": "ray", "workers": 2, "busy": 2, "queued": 0}, status.pool
        assert [j["job_id"] for j in status.running] == [long_job] and status.others_running == 1
        b_next = b.submit("texture", params("toy", steps=3, seed=3), ARRAYS)  # both actors busy: it waits
        _, accepted = rec.wait("b", lambda e: isinstance(e, m.Accepted) and e.job_id == b_next)
        assert accepted.queue_position == 1
        a.cancel(long_job)
        a_end, _ = rec.wait("a", lambda e: isinstance(e, m.Cancelled) and e.job_id == long_job, 30)
        b_end, result = rec.wait("b", lambda e: isinstance(e, JobResult) and e.job_id == b_job)
        assert b_end > a_end  # the cancel stopped only client A's job: B's ran on to its result
        assert a_start < b_end and b_start < a_end  # the two jobs' run intervals overlap
        assert result.arrays["texture"].shape == (64, 64, 3)
        rec.wait("b", lambda e: isinstance(e, JobResult) and e.job_id == b_next)
        seen_a = {getattr(e, "job_id", None) for _, e in rec.events["a"]} - {None}
        seen_b = {getattr(e, "job_id", None) for _, e in rec.events["b"]} - {None}
        assert seen_a == {long_job} and seen_b == {b_job, b_next}
        assert any(isinstance(e, m.Progress) and e.preview_png for _, e in rec.events["b"])
