"""Issue 15 regressions: no job and no message can end the engine; each test names the probe finding it guards.

An in-process server (a thread) runs the real texture task on the bundled toy prior and the fake `sleepy` task;
the false-death test pauses a real engine subprocess with SIGSTOP, and the start-up test runs `serve` itself.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from csd_blender.client import EngineClient, EngineDied, EngineRecovered, JobResult
from csd_blender.protocol import codec, messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.limits import REPLY_LIMITS
from engine.server import EngineServer, ServerConfig

import engine_fakes
from test_server import ARRAYS, FACES, VERTS, params

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-test-token-0123456789"
ADMIN = "hardening-admin-token-9876543210"


@pytest.fixture(scope="module", autouse=True)
def _sleepy_task_only_here():
    engine_fakes.register()
    yield
    engine_fakes.unregister()


def _start(**config) -> tuple[EngineServer, threading.Thread, list]:
    from engine.cli import load_registries

    load_registries()
    server = EngineServer(ServerConfig(bind="tcp://127.0.0.1:0", token=TOKEN, admin_token=ADMIN, **config))
    server.bind()
    codes: list = []
    thread = threading.Thread(target=lambda: codes.append(server.serve_forever()), daemon=True)
    thread.start()
    return server, thread, codes


def _stop(server, thread, codes) -> None:
    server.request_stop()
    thread.join(30)
    assert codes == [0] and not thread.is_alive()


@pytest.fixture(scope="module")
def server():
    started = _start()
    yield started[0]
    _stop(*started)


@pytest.fixture
def client(server):
    with EngineClient(server.endpoint, TOKEN) as c:
        c.connect(timeout_s=10)
        yield c


@pytest.fixture
def dealer(server):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    yield sock
    sock.close(0)
    ctx.term()


def _reply(sock, timeout_s: float = 30.0) -> tuple[codec.Header, m.Message]:
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return codec.decode(sock.recv_multipart(), REPLY_LIMITS)


def assert_clean(reply: m.Message) -> None:
    """No reply carries a traceback or a source path; an internal error carries an error id."""
    if isinstance(reply, m.ErrorReply):
        assert reply.traceback == "" and "Traceback" not in reply.message and "Traceback" not in reply.detail
        assert ".py" not in reply.message and str(ROOT) not in reply.message + reply.detail, reply
        assert "\n" not in reply.message
        if reply.code == ErrorCode.INTERNAL.value:
            assert reply.error_id and reply.error_id in reply.message


def _ping(server) -> None:
    with EngineClient(server.endpoint, TOKEN) as c:
        assert c.connect(timeout_s=10).protocol_version == m.PROTOCOL_VERSION_STR


def _events(client: EngineClient, job: str, timeout_s: float = 60.0) -> list:
    """Every event of `job` until its final one."""
    events: list = []
    deadline = time.monotonic() + timeout_s
    while True:
        for e in client.poll():
            if getattr(e, "job_id", None) == job:
                assert_clean(e)
                events.append(e)
                if isinstance(e, (JobResult, m.ErrorReply, m.Cancelled)):
                    return events
        assert time.monotonic() < deadline, events
        time.sleep(0.005)


# --- finding 1: a finished job can kill the engine -----------------------------------------------------------


def test_finding1_nan_in_a_result_goes_out_as_null_and_the_engine_serves_on(client, caplog):
    caplog.set_level(logging.WARNING, logger="engine")
    result = client.wait(client.submit("sleepy", {"steps": 1, "step_s": 0.0, "fail": "nan"}), timeout_s=30)
    assert result.meta["checksum"] is None and np.isnan(result.arrays["texture"][0, 0, 0])
    assert any("result.meta.checksum" in r.getMessage() for r in caplog.records), "the warning names the field"
    assert client.wait(client.submit("sleepy", {"steps": 1, "step_s": 0.0}), timeout_s=30).meta["checksum"] > 0


def test_finding1_a_diverging_texture_job_ends_in_a_result(client):
    """guidance_overrides omega1 = 1e30 makes the loss infinite; the result still arrives, with a null loss."""
    job = client.submit("texture", params("toy", steps=2, guidance_overrides={"omega1": 1e30}), ARRAYS)
    result = client.wait(job, timeout_s=120)
    assert result.meta["stats"]["final_loss"] is None and np.isfinite(result.arrays["texture"]).all()
    assert client.status().current is None


def test_finding1_return_partial_cancelled_before_the_first_step(client):
    """Cancelled while its prior loads, a return_partial job bakes what exists: its loss is NaN (sent as null)."""
    client.release()  # the prior loads again, so the cancel lands before step 0
    job = client.submit("texture", params("toy", steps=50, return_partial=True), ARRAYS)
    events: list = []
    deadline = time.monotonic() + 60
    while not any(isinstance(e, m.Progress) and e.stage == "loading" for e in events):
        events += [e for e in client.poll() if getattr(e, "job_id", None) == job]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    client.cancel(job)
    result = client.wait(job, timeout_s=120)
    assert result.meta["partial"] is True and result.meta["cancelled"] is True
    assert result.meta["stats"]["steps_run"] == 0 and result.meta["stats"]["final_loss"] is None
    status = client.status()
    assert status.current is None and status.queue == []


def test_finding1_an_unencodable_message_becomes_an_internal_reply_with_a_logged_id(client, caplog):
    from engine.registry import TASKS
    from engine.tasks.base import TaskSpec

    caplog.set_level(logging.ERROR, logger="engine")
    TASKS.register("unencodable")(TaskSpec(
        "unencodable", engine_fakes.SleepyParams, lambda p, a: p, engine_fakes.run_sleepy,
        lambda result: ({"when": object()}, {}), prior_key=lambda job: None))
    try:
        with pytest.raises(ProtocolError) as info:
            client.wait(client.submit("unencodable", {"steps": 1, "step_s": 0.0}), timeout_s=30)
    finally:
        TASKS.unregister("unencodable")
    err = info.value
    assert err.code == ErrorCode.INTERNAL and err.error_id in err.message and err.traceback == ""
    logged = [r for r in caplog.records if err.error_id in r.getMessage()]
    assert logged and "TypeError" in logged[0].exc_text
    assert client.wait(client.submit("sleepy", {"steps": 1, "step_s": 0.0}), timeout_s=30).arrays


# --- finding 2: a client with no valid token gets a stack trace ----------------------------------------------


def _raw_header(**fields) -> bytes:
    header = {"msg_id": codec.new_id(), "msg_type": "ping", "version": "1.0", "parent_id": None, "token": TOKEN,
              "session": ""}
    header.update(fields)
    return json.dumps(header).encode()  # ensure_ascii: a lone surrogate travels as a \ud800 escape


@pytest.mark.parametrize("field, value, code", [
    ("token", "\ud800abc", ErrorCode.MALFORMED_MESSAGE),
    ("token", TOKEN[:-1] + "\udcff", ErrorCode.MALFORMED_MESSAGE),
    ("msg_id", "id\udfff", ErrorCode.MALFORMED_MESSAGE),
    ("session", "\ud800", ErrorCode.MALFORMED_MESSAGE),
    ("version", "01.0", ErrorCode.MALFORMED_MESSAGE),
    ("version", "1.0\n", ErrorCode.MALFORMED_MESSAGE),
])
def test_finding2_bad_header_text_gets_a_clean_error(server, dealer, field, value, code):
    dealer.send_multipart([_raw_header(**{field: value}), b"{}"])
    _, reply = _reply(dealer)
    assert isinstance(reply, m.ErrorReply) and reply.code == code.value, reply
    assert_clean(reply)
    _ping(server)


def test_finding2_lone_surrogates_in_params_name_the_field(server, dealer):
    frames, header = codec.encode(m.Submit("texture", params("toy", model="toy\ud800"), {
        k: m.Array(v.dtype.name, v.shape, v) for k, v in ARRAYS.items()}), token=TOKEN)
    dealer.send_multipart(frames)
    _, reply = _reply(dealer)
    assert isinstance(reply, m.ErrorReply) and reply.code == ErrorCode.BAD_REQUEST.value, reply
    assert reply.field == "model" and reply.message.startswith("model: is not valid text"), reply
    assert_clean(reply)


def test_duplicate_json_keys_are_malformed(server, dealer):
    """`"token":"wrong","token":"<real>"` must not pass as the last one."""
    header = _raw_header()[:-1] + f',"token":"{TOKEN}"}}'.encode()
    header = header.replace(f'"token": "{TOKEN}"'.encode(), b'"token": "wrong-token-0000000000"', 1)
    dealer.send_multipart([header, b"{}"])
    _, reply = _reply(dealer)
    assert isinstance(reply, m.ErrorReply) and reply.code == ErrorCode.MALFORMED_MESSAGE.value, reply
    assert "duplicate key" in reply.message


# --- finding 3: refusals arrive late or as `internal` --------------------------------------------------------


def _look_at(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A Blender camera (looks down -Z, +Y up) at `eye` looking at `target`."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w.astype(np.float32)


def _rig(n: int = 2, **intr) -> dict:
    eyes = [(3 * np.sin(a), -3 * np.cos(a), 1.0) for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]
    c2w = np.stack([_look_at(e) for e in eyes]) if n else np.zeros((0, 4, 4), np.float32)
    k = {"fx": 50.0, "fy": 50.0, "cx": 31.5, "cy": 31.5, "w": 64.0, "h": 64.0, **intr}
    row = [k["fx"], k["fy"], k["cx"], k["cy"], k["w"], k["h"]]
    return {"c2w": c2w, "intrinsics": np.array([row] * n, np.float32).reshape(n, 6)}


def _away() -> dict:
    rig = _rig(1)
    rig["c2w"][0, :3, 2] *= -1  # looks away from the mesh (flip forward and right: still a rotation)
    rig["c2w"][0, :3, 0] *= -1
    return rig


def _degenerate_faces() -> dict:
    return {"vertices": VERTS, "faces": np.zeros_like(FACES)}


DOOR_CASES = {  # name -> (params overrides, arrays, code, field)
    "rig_with_no_camera": ({}, _rig(0), ErrorCode.BAD_REQUEST, "c2w"),
    "c2w_without_intrinsics": ({}, {"c2w": _rig(2)["c2w"]}, ErrorCode.BAD_REQUEST, "intrinsics"),
    "intrinsics_without_c2w": ({}, {"intrinsics": _rig(2)["intrinsics"]}, ErrorCode.BAD_REQUEST, "c2w"),
    "all_zero_intrinsics": ({}, _rig(2, fx=0, fy=0, cx=0, cy=0, w=0, h=0), ErrorCode.BAD_REQUEST, "intrinsics"),
    "a_thousand_cameras": ({}, _rig(1000), ErrorCode.BAD_REQUEST, "c2w"),
    "camera_facing_away": ({}, _away(), ErrorCode.BAD_REQUEST, "c2w"),
    "height_1e-30": ({}, _rig(2, h=1e-30), ErrorCode.BAD_REQUEST, "intrinsics"),
    "fx_3e38": ({}, _rig(2, fx=3e38), ErrorCode.BAD_REQUEST, "intrinsics"),
    "grad_clip_abc": ({"guidance_overrides": {"grad_clip": "abc"}}, {}, ErrorCode.BAD_REQUEST,
                      "guidance_overrides.grad_clip"),
    "negative_prompt_list": ({"guidance_overrides": {"negative_prompt": ["x"]}}, {}, ErrorCode.BAD_PROMPT,
                             "guidance_overrides.negative_prompt"),
    "unknown_override": ({"guidance_overrides": {"sharpness": 3}}, {}, ErrorCode.BAD_REQUEST,
                         "guidance_overrides.sharpness"),
    "omega2_text": ({"guidance_overrides": {"omega2": "high"}}, {}, ErrorCode.BAD_REQUEST,
                    "guidance_overrides.omega2"),
    "t_min_above_t_max": ({"guidance_overrides": {"t_min": 0.99}}, {}, ErrorCode.BAD_REQUEST,
                          "guidance_overrides"),
    "unknown_guidance": ({"guidance": "magic"}, {}, ErrorCode.BAD_REQUEST, "guidance"),
    "all_faces_degenerate": ({}, _degenerate_faces(), ErrorCode.INVALID_MESH, None),
}


@pytest.mark.parametrize("case", list(DOOR_CASES))
def test_finding3_refused_at_the_door_with_the_field_named(server, dealer, case):
    over, extra, code, field = DOOR_CASES[case]
    arrays = {**ARRAYS, **extra}
    wire = {k: m.Array(v.dtype.name, v.shape, np.ascontiguousarray(v)) for k, v in arrays.items()}
    frames, header = codec.encode(m.Submit("texture", params("toy", **over), wire), token=TOKEN)
    dealer.send_multipart(frames)
    _, reply = _reply(dealer)
    assert isinstance(reply, m.ErrorReply), f"{case}: {reply.MSG_TYPE} (should be refused before 'accepted')"
    assert reply.code == code.value and reply.job_id == header.msg_id, (case, reply)
    if field is not None:
        assert reply.field == field and reply.message.startswith(field), (case, reply)
    assert_clean(reply)


def test_finding3_a_rig_that_sees_the_mesh_runs(client):
    result = client.wait(client.submit("texture", params("toy", steps=2), {**ARRAYS, **_rig(3)}), timeout_s=120)
    assert result.meta["stats"]["steps_run"] == 2 and np.isfinite(result.arrays["texture"]).all()


def test_max_cameras_is_the_limit(server, dealer):
    from csd_blender.protocol.params import MAX_CAMERAS
    from engine.validate import check_rig

    check_rig({**ARRAYS, **_rig(MAX_CAMERAS)})
    with pytest.raises(ProtocolError, match=f"the limit is {MAX_CAMERAS}"):
        check_rig({**ARRAYS, **_rig(MAX_CAMERAS + 1)})


# --- finding 4: a second engine on a used port ---------------------------------------------------------------


def test_finding4_serve_start_up_failures_are_one_error_line_and_exit_2(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    env = {**os.environ, "CSD_ENGINE_TOKEN": TOKEN}
    runs = {
        "port in use": ["--bind", f"tcp://127.0.0.1:{port}"],
        "bad bind": ["--bind", "tcp://127.0.0.1:notaport"],
        "unreadable token file": ["--token-file", str(tmp_path / "missing" / "token")],
        "unwritable log file": ["--log-file", str(tmp_path / "missing" / "engine.log")],
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "engine", "serve", "--device", "cpu", *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in runs.items()
    }
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            lines = err.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err)
            assert "Traceback" not in err and out == "", name
    finally:
        busy.close()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


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
    started = _start()
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
            _stop(*started)


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
    caplog.set_level(logging.INFO, logger="engine.server")
    started = _start(client_timeout_s=1.0)
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
        _stop(*started)


# --- finding 6: a paused engine is declared dead and never recovered -----------------------------------------


@pytest.fixture
def fake_engine(tmp_path):
    """`python tests/engine_fakes.py serve` (the sleepy task) as a subprocess we can pause."""
    (tmp_path / "token").write_text(TOKEN)
    endpoint_file = tmp_path / "endpoint.json"
    log = open(tmp_path / "engine.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "engine_fakes.py"), "serve", "--device", "cpu", "--token-file",
         str(tmp_path / "token"), "--endpoint-file", str(endpoint_file), "--client-timeout", "2"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
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
    log.close()


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
        events = _pause(proc.pid, client, 3.0)  # longer than the engine's client timeout (2 s): forgiven
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
