"""Issue 15 regressions, findings 1-4: no finished job, header, parameter or start-up failure can end the engine
or reach a client as a stack trace; each test names the probe finding it guards.

An in-process server (a thread, tests/fixtures/server_thread.py) runs the real texture task on the bundled toy
prior and the fake `sleepy` task; the start-up test runs `serve` itself. Findings 5-6 (clients, sessions, a paused
engine) are in test_server_hardening_clients.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import engine_fakes
import numpy as np
import pytest
import zmq
from paths import REPO
from server_jobs import ARRAYS, FACES, VERTS, params
from server_thread import TOKEN, assert_clean, serving, sleepy_task_registered, start_server, stop_server

from csd_blender.link.client import EngineClient
from csd_blender.protocol import codec
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.limits import REPLY_LIMITS

_start, _stop = start_server, stop_server  # test_fuzz.py imports TOKEN, _start, _stop and assert_clean from here


@pytest.fixture(scope="module", autouse=True)
def _sleepy_task_only_here():
    yield from sleepy_task_registered()


@pytest.fixture(scope="module")
def server():
    yield from serving()


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


def _ping(server) -> None:
    with EngineClient(server.endpoint, TOKEN) as c:
        assert c.connect(timeout_s=10).protocol_version == m.PROTOCOL_VERSION_STR


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
    frames, _ = codec.encode(m.Submit("texture", params("toy", model="toy\ud800"), {
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
    from engine.render.rig import check_rig

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
        name: subprocess.Popen([sys.executable, "-m", "engine", "serve", "--device", "cpu", *args], cwd=REPO,
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
