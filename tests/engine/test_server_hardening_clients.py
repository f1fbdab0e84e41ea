"""Issue 15 regressions, findings 5-6: clients see and cancel only their own jobs, only the admin token shuts the
engine down, a silent client's jobs are cancelled, and a paused engine's false death is recovered.

The in-process server of tests/fixtures/server_thread.py runs the fake `sleepy` task; the false-death tests pause
a real engine subprocess (`tests/fixtures/engine_fakes.py serve`) with SIGSTOP.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import engine_fakes
import pytest
from paths import REPO
from server_thread import ADMIN, TOKEN, serving, sleepy_task_registered, start_server, stop_server

from csd_blender.link.client import EngineClient, EngineDied, EngineRecovered, JobResult
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode


@pytest.fixture(scope="module", autouse=True)
def _sleepy_task_only_here():
    yield from sleepy_task_registered()



@pytest.fixture(scope="module")
def server():
    yield from serving()


# --- finding 5: clients see and cancel each other's jobs; a gone client's jobs run on ------------------------


def test_finding5_clients_see_and_cancel_only_their_own_jobs(server):
    with EngineClient(server.endpoint, TOKEN) as a, EngineClient(server.endpoint, TOKEN) as b:
        for c in (a, b):
            c.connect(timeout_s=10)
        running = a.submit("sleepy", {"steps": 400, "step_s": 0.01})
        queued = a.submit("sleepy", {"steps": 400, "step_s": 0.01})
        _events_until_accepted(a, queued)
        seen = b.status()
        assert seen.current is None and seen.queue == [] and (seen.others_running, seen.others_queued) == (1, 1)
        b.cancel(running)
        refused = _first(b, m.ErrorReply)
        assert refused.code == ErrorCode.UNKNOWN_JOB.value and refused.field == "job_id"
        own = a.status()
        assert own.current["job_id"] == running and own.queue == [queued] and own.others_queued == 0
        with EngineClient(server.endpoint, ADMIN) as admin:  # the admin token sees and cancels everything
            admin.connect(timeout_s=10)
            everything = admin.status()
            assert everything.current["job_id"] == running and everything.queue == [queued]
            admin.cancel(queued)
            admin.cancel(running)
            finals = {e.job_id: e for e in _drain_until(a, {running, queued})}
        assert all(isinstance(e, m.Cancelled) for e in finals.values()), finals


def test_only_the_admin_token_shuts_a_shared_engine_down():
    started = start_server()
    server, thread, codes = started
    try:
        with EngineClient(server.endpoint, TOKEN) as artist:
            artist.connect(timeout_s=10)
            artist.shutdown()
            refused = _first(artist, m.ErrorReply)
            assert refused.code == ErrorCode.UNAUTHORIZED.value and "admin token" in refused.message
            assert artist.status().others_running == 0  # still serving
        assert thread.is_alive()
        with EngineClient(server.endpoint, ADMIN) as admin:
            admin.connect(timeout_s=10)
            admin.shutdown()
        thread.join(30)
        assert codes == [0] and not thread.is_alive()
    finally:
        if thread.is_alive():
            stop_server(*started)


def _events_until_accepted(client, job, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        if any(isinstance(e, m.Accepted) and e.job_id == job for e in client.poll()):
            return
        assert time.monotonic() < deadline
        time.sleep(0.005)


def _first(client, kind, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        for e in client.poll():
            if isinstance(e, kind):
                return e
        assert time.monotonic() < deadline
        time.sleep(0.005)


def _drain_until(client, jobs: set, timeout_s=30.0) -> list:
    finals, deadline = [], time.monotonic() + timeout_s
    while {e.job_id for e in finals} != jobs:
        finals += [e for e in client.poll() if isinstance(e, (JobResult, m.ErrorReply, m.Cancelled))
                   and getattr(e, "job_id", None) in jobs]
        assert time.monotonic() < deadline, finals
        time.sleep(0.005)
    return finals


def test_finding5_jobs_of_a_silent_client_are_cancelled_queued_first(caplog):
    caplog.set_level(logging.INFO, logger="engine.serve.server")
    started = start_server(client_timeout_s=1.0)
    server = started[0]
    try:
        gone = EngineClient(server.endpoint, TOKEN)
        gone.connect(timeout_s=10)
        jobs = [gone.submit("sleepy", {"steps": 10_000, "step_s": 0.01}) for _ in range(3)]
        _events_until_accepted(gone, jobs[-1])
        deadline = time.monotonic() + 10
        while server.running is None:  # the first job starts on the loop's next turn
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gone.close()  # no cancel, no more pings
        assert [r.job_id for r in list(server.pending)] == jobs[1:]
        deadline = time.monotonic() + 15
        while server.jobs:  # read from this thread: a snapshot is all the test needs
            assert time.monotonic() < deadline, list(server.jobs)
            time.sleep(0.1)
        notes = [r.getMessage() for r in caplog.records if "silent for" in r.getMessage()]
        assert notes and "2 queued job(s) and running job " + jobs[0] in notes[0], notes
    finally:
        stop_server(*started)


# --- finding 6: a paused engine is declared dead and never recovered -----------------------------------------


@pytest.fixture
def fake_engine(tmp_path):
    """`python tests/fixtures/engine_fakes.py serve` (the sleepy task) as a subprocess we can pause."""
    (tmp_path / "token").write_text(TOKEN)
    endpoint_file = tmp_path / "endpoint.json"
    with open(tmp_path / "engine.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, engine_fakes.__file__, "serve", "--device", "cpu", "--token-file",
             str(tmp_path / "token"), "--endpoint-file", str(endpoint_file), "--client-timeout", "2"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 120
        while not endpoint_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "engine.log").read_text()
            time.sleep(0.05)
        time.sleep(0.1)
        yield proc, json.loads(endpoint_file.read_text())["endpoint"], tmp_path / "engine.log"
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(30)


def _pause(pid: int, client: EngineClient, seconds: float) -> list:
    """SIGSTOP the engine until the client declares it dead and `seconds` passed; return the events seen."""
    events: list = []
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        while time.monotonic() - stopped < seconds or not any(isinstance(e, EngineDied) for e in events):
            events += client.poll()
            assert time.monotonic() - stopped < 10, events
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGCONT)
    return events


def test_finding6_a_false_death_is_recovered_and_the_job_followed_to_its_result(fake_engine):
    proc, endpoint, log = fake_engine
    with EngineClient(endpoint, TOKEN) as client:
        client.connect(timeout_s=30)
        job = client.submit("sleepy", {"steps": 150, "step_s": 0.02})
        _first(client, m.Progress, timeout_s=30)
        _pause(proc.pid, client, 3.0)  # longer than the engine's client timeout (2 s): forgiven
        assert not client.alive
        recovered = _first(client, EngineRecovered, timeout_s=15)
        assert recovered.resumed == [job] and client.alive
        result = client.wait(job, timeout_s=60)
        assert isinstance(result, JobResult) and result.meta["checksum"] > 0
    assert proc.poll() is None and "stalled" in log.read_text()


def test_finding6_wait_rides_out_a_pause(fake_engine):
    proc, endpoint, _ = fake_engine
    with EngineClient(endpoint, TOKEN, recover_s=10.0) as client:
        client.connect(timeout_s=30)
        job = client.submit("sleepy", {"steps": 150, "step_s": 0.02})
        _first(client, m.Progress, timeout_s=30)
        timer = threading.Timer(3.0, os.kill, (proc.pid, signal.SIGCONT))
        os.kill(proc.pid, signal.SIGSTOP)
        timer.start()
        try:
            assert client.wait(job, timeout_s=60).job_id == job
        finally:
            timer.join()
        assert client.alive and not any(isinstance(e, EngineDied) for e in client.poll())  # no stale death


def test_finding6_an_abandoned_job_is_cancelled_when_the_engine_comes_back(fake_engine):
    proc, endpoint, _ = fake_engine
    with EngineClient(endpoint, TOKEN) as client:
        client.connect(timeout_s=30)
        job = client.submit("sleepy", {"steps": 10_000, "step_s": 0.01})
        _first(client, m.Progress, timeout_s=30)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            _first(client, EngineDied, timeout_s=10)
            client.abandon(job)  # what a UI does when it gives up on the job
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        recovered = _first(client, EngineRecovered, timeout_s=15)
        assert recovered.cancelled == [job] and recovered.resumed == []
        cancelled = _first(client, m.Cancelled, timeout_s=15)
        assert cancelled.job_id == job
        assert client.status().current is None
