"""`serve --ray`: a shared engine runs two clients' jobs at once on two Ray actors (local runtime, two CPUs);
each client gets only its own progress and result, a cancel stops only its own job, a waiting job hears its
queue position, and `status` reports the pool."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ray")

from ray_runtime import local_ray
from server_jobs import ARRAYS, params

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import messages as m
from engine.serve.config import ServerConfig
from engine.serve.server import EngineServer

TOKEN = "ray-pool-test-token-0123456789"
HEALTH_S = 20.0  # a stopped actor's job ends this long after its last answer (a loaded two-core box needs slack)
USES_RAY = True  # conftest.py shuts the shared runtime (tests/ray_runtime.py) down after the last Ray module


@pytest.fixture(scope="module")
def server():
    from engine.tasks import load_registries

    load_registries()
    local_ray()
    engine = EngineServer(ServerConfig(bind="tcp://127.0.0.1:0", token=TOKEN, ray_address="local",
                                       gpus_per_worker=0, cpus_per_worker=1, ray_health_timeout_s=HEALTH_S))
    engine.bind()
    assert engine.slots == 2 and len(engine.worker.wait_ready()) == 2
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
        assert status.pool == {"kind": "ray", "workers": 2, "busy": 2, "queued": 0, "devices": ["cpu", "cpu"]}, \
            status.pool
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


# --- issue 22: a pool that never blocks on one actor --------------------------------------------------------------


def test_hello_and_status_report_each_actor_s_device(server):
    server.worker.wait_ready()  # an actor replaced by an earlier test has answered too
    with EngineClient(server.endpoint, TOKEN) as client:
        hello = client.connect(timeout_s=10)
        assert [w["device"] for w in hello.workers] == ["cpu", "cpu"] and hello.device == "cpu"
        assert hello.device_name.startswith("Ray pool of 2")
        assert client.status().pool["devices"] == ["cpu", "cpu"]


def test_a_stopped_actor_holds_up_nobody_else_and_its_job_ends_with_engine_died(server):
    import os
    import signal

    with EngineClient(server.endpoint, TOKEN) as a, EngineClient(server.endpoint, TOKEN) as b:
        a.connect(timeout_s=10)
        b.connect(timeout_s=10)
        rec = Recorder(a=a, b=b)
        stuck = a.submit("texture", params("toy", steps=5000, seed=4), ARRAYS)
        rec.wait("a", _optimising(stuck))
        index = next(i for i, slot in enumerate(server.worker.pool) if slot.record and slot.record.job_id == stuck)
        pid = server.worker.ray.get(server.worker.pool[index].actor.pid.remote(), timeout=30)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            done = b.submit("texture", params("toy", steps=3, seed=5), ARRAYS)
            rec.wait("b", lambda e: isinstance(e, JobResult) and e.job_id == done, 120)
            long_b = b.submit("texture", params("toy", steps=5000, seed=6), ARRAYS)
            rec.wait("b", _optimising(long_b), 120)
            b.cancel(long_b)
            asked = time.monotonic()
            answered, _ = rec.wait("b", lambda e: isinstance(e, m.Cancelled) and e.job_id == long_b, 60)
            ended, error = rec.wait("a", lambda e: isinstance(e, m.ErrorReply) and e.job_id == stuck,
                                    HEALTH_S + 30)
            assert error.code == "engine_died" and "stopped answering" in error.message, error
            assert ended - stopped < HEALTH_S + 30
        finally:
            try:
                os.kill(pid, signal.SIGCONT)  # a live actor must not stay stopped (a replaced one is gone)
            except ProcessLookupError:
                pass
        again = b.submit("texture", params("toy", steps=3, seed=7), ARRAYS)  # the pool is whole again
        rec.wait("b", lambda e: isinstance(e, JobResult) and e.job_id == again, 180)
        assert answered - asked < 2.0, f"B's cancel took {answered - asked:.2f} s"


def test_an_actor_killed_while_idle_is_replaced_before_the_next_job(server):
    import os
    import signal

    server.worker.wait_ready()
    pids = [server.worker.ray.get(slot.actor.pid.remote(), timeout=30) for slot in server.worker.pool]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=10)
        result = client.wait(client.submit("texture", params("toy", steps=3, seed=8), ARRAYS), timeout_s=300)
        assert result.arrays["texture"].shape == (64, 64, 3)
