"""Add-on logic without Blender: job parameters from settings, the engine session on a fake engine, the
interpreter check against real interpreters."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from csd_blender.link import interpreter_check
from csd_blender.link import session as engine_session
from csd_blender.props import job_params
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import TextureParams
from fake_zmq_engine import FakeEngine


def _settings(**over):
    base = dict(prompt="  a blue striped sphere ", negative_prompt="", model="", quality="fast", steps=0,
                seed=5, use_random_seed=False, texture_size=0, controlnet="NONE", controlnet_scale=1.0,
                progress_every=10)
    base.update(over)
    return SimpleNamespace(**base)


def test_texture_params_from_settings():
    p = job_params.texture_params(_settings(), default_model="toy")
    assert p == TextureParams(prompt="a blue striped sphere", quality="fast", seed=5, model="toy")
    assert p.steps is None and p.texture_size is None and p.controlnets == []
    settings = _settings(steps=4, texture_size=64, controlnet="depth", controlnet_scale=0.5, model=" sd15 ")
    p = job_params.texture_params(settings, default_model="toy")
    assert (p.steps, p.texture_size, p.controlnets, p.controlnet_scales, p.model) == (4, 64, ["depth"], [0.5],
                                                                                     "sd15")


def test_controlnet_folder_travels_as_kind_equals_source_and_is_restored():
    settings = _settings(controlnet="depth", controlnet_depth_source=" /models/cn depth ",
                         controlnet_canny_source="/models/canny")
    p = job_params.texture_params(settings, default_model="/models/sd15")
    assert p.controlnets == ["depth=/models/cn depth"] and p.model == "/models/sd15"
    restored = _settings(controlnet="canny", controlnet_depth_source="", controlnet_canny_source="/models/canny")
    job_params.settings_from_params(restored, job_params.loads_params(job_params.dumps_params(p)))
    assert (restored.controlnet, restored.controlnet_depth_source) == ("depth", "/models/cn depth")
    assert job_params.texture_params(restored, default_model="/models/sd15") == p
    assert job_params.texture_params(_settings(controlnet="canny"), default_model="x").controlnets == ["canny"]


def test_texture_params_name_the_bad_field():
    with pytest.raises(ProtocolError) as err:
        job_params.texture_params(_settings(prompt="   "))
    assert err.value.field == "prompt" and err.value.code == ErrorCode.BAD_PROMPT
    with pytest.raises(ProtocolError, match="texture_size"):
        job_params.texture_params(_settings(texture_size=32))


def test_random_seed_is_drawn_and_stored_params_reproduce_it():
    seeds = {job_params.texture_params(_settings(use_random_seed=True)).seed for _ in range(5)}
    assert len(seeds) > 1
    p = job_params.texture_params(_settings(use_random_seed=True, steps=4, progress_every=2))
    text = job_params.dumps_params(p)
    assert job_params.loads_params(text) == p
    restored = _settings(prompt="other", steps=99, seed=0, use_random_seed=True, progress_every=7)
    job_params.settings_from_params(restored, job_params.loads_params(text))
    assert job_params.texture_params(restored) == p          # the same request, seed included
    with pytest.raises(ProtocolError, match="csd_params"):
        job_params.loads_params("{not json")


def test_session_connects_releases_and_notices_a_dead_engine():
    session = engine_session.EngineSession()
    with FakeEngine() as fake:
        session.start(engine_session.EngineSettings(mode="REMOTE", endpoint=fake.endpoint, token=fake.token))
        assert session.connected and session.state == engine_session.RUNNING
        assert session.describe()[1] == "Device: Fake CPU"
        assert session.release() == "Released toy; 0 B still allocated"
        assert session.poll_idle() is False
        fake.die()
        deadline = time.monotonic() + 10
        while not session.poll_idle():
            assert time.monotonic() < deadline, "the dead engine was not noticed"
            time.sleep(0.05)
        assert session.state == engine_session.DEAD and not session.connected
        assert "did not answer" in session.last_error
    session.stop()
    assert session.state == engine_session.STOPPED


def _wait_start(session, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := session.poll_start()) is None:
        assert time.monotonic() < deadline, "the start never finished"
        time.sleep(0.05)
    return state


def test_begin_start_does_not_block_and_adopts_the_engine_on_the_polling_thread():
    session = engine_session.EngineSession()
    with FakeEngine() as fake:
        began = time.monotonic()
        session.begin_start(engine_session.EngineSettings(mode="REMOTE", endpoint=fake.endpoint,
                                                          token=fake.token))
        assert time.monotonic() - began < 0.2
        assert session.state == engine_session.STARTING and not session.connected
        assert session.describe()[0].startswith("Engine: starting (")
        assert _wait_start(session) == engine_session.RUNNING
        assert session.connected and not session.starting and session.describe()[1] == "Device: Fake CPU"
        session.stop()


def _slow_python(tmp_path, body: str) -> str:
    """A stand-in 'interpreter' for `python -m engine serve ...` (a shell script)."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_start_can_be_cancelled_and_kills_the_engine_it_launched(tmp_path):
    python = _slow_python(tmp_path, "echo $$ > \"$(dirname \"$0\")/pid\"; exec sleep 60")
    session = engine_session.EngineSession()
    began = time.monotonic()
    session.begin_start(engine_session.EngineSettings(mode="LOCAL", python=python,
                                                      log_file=str(tmp_path / "engine.log")))
    assert time.monotonic() - began < 0.5
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the stand-in engine never ran"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    assert session.poll_start() is None                     # still waiting for the endpoint
    session.stop()
    assert session.state == engine_session.STOPPED and session.poll_start() == engine_session.STOPPED
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and "zombie" not in _proc_state(pid):
        assert time.monotonic() < deadline, "the engine being started was not killed"
        time.sleep(0.05)


def _proc_state(pid: int) -> str:
    """The /proc state line of `pid`; "zombie" also when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((line for line in fh if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"


def test_a_failed_background_start_reports_the_engine_log(tmp_path):
    python = _slow_python(tmp_path, "echo 'RuntimeError: CUDA driver too old' >&2; exit 3")
    session = engine_session.EngineSession()
    session.begin_start(engine_session.EngineSettings(mode="LOCAL", python=python,
                                                      log_file=str(tmp_path / "engine.log")))
    assert _wait_start(session) == engine_session.FAILED
    assert "exited with code 3" in session.last_error and "CUDA driver too old" in session.last_error
    assert session.client is None and session.process is None and session.log_file.endswith("engine.log")


class _SlowToStop:
    """Stands in for an EngineProcess whose engine hangs: stop() takes 2 s."""

    def __init__(self):
        import threading

        self.stopped = threading.Event()

    def stop(self):
        time.sleep(2.0)
        self.stopped.set()


@pytest.mark.parametrize("background", [False, True])
def test_stopping_a_hung_engine_freezes_the_caller_only_when_asked_to_wait(background):
    session = engine_session.EngineSession()
    session.stop_in_background = background
    for end in (session.stop, lambda: session.mark_dead("did not answer")):
        session.process, session.state = _SlowToStop(), engine_session.RUNNING
        process, began = session.process, time.monotonic()
        end()
        took = time.monotonic() - began
        assert session.process is None and (took < 0.5 if background else took >= 2.0), took
        assert process.stopped.wait(5), "the engine was never stopped"


def test_begin_start_runs_the_real_engine_and_a_background_stop_returns_at_once(tmp_path):
    session = engine_session.EngineSession()
    session.stop_in_background = True                      # as in an interactive Blender
    session.begin_start(engine_session.EngineSettings(mode="LOCAL", python=sys.executable, device="cpu",
                                                      log_file=str(tmp_path / "engine.log")))
    try:
        assert _wait_start(session) == engine_session.RUNNING, session.last_error
        assert session.connected and session.hello.device == "cpu" and session.process.is_running()
        pid = session.process.pid
    finally:
        began = time.monotonic()
        session.stop()
    assert time.monotonic() - began < 0.5 and session.state == engine_session.STOPPED
    deadline = time.monotonic() + 15
    while "zombie" not in _proc_state(pid):                 # exits and is reaped by the helper thread
        assert time.monotonic() < deadline, "the engine did not exit after a background stop"
        time.sleep(0.05)


@pytest.mark.parametrize("settings, message", [
    (engine_session.EngineSettings(mode="LOCAL", python=""), "Python: set the interpreter"),
    (engine_session.EngineSettings(mode="LOCAL", python="/no/such/python"), "/no/such/python does not exist"),
    (engine_session.EngineSettings(mode="REMOTE", endpoint=" "), "Endpoint: set"),
    (engine_session.EngineSettings(mode="REMOTE", endpoint="tcp://127.0.0.1:9", key_folder="/no/keys"),
     "server.key not found"),
    (engine_session.EngineSettings(mode="REMOTE", endpoint="tcp://gpu-box:5555", online_access=False),
     "Endpoint: tcp://gpu-box:5555 is on another machine; allow Online Access"),
])
def test_session_start_errors_name_the_setting(settings, message):
    session = engine_session.EngineSession()
    with pytest.raises(engine_session.SessionError, match=message):
        session.start(settings)
    assert session.state == engine_session.FAILED and message.split(":")[0] in session.last_error


def test_python_check_reports_versions_of_the_engine_interpreter():
    result = interpreter_check.check_python(sys.executable)
    assert result.ok, result.error
    import torch

    assert result.info["torch"] == torch.__version__ and result.info["engine"] == "0.1.0"
    assert result.info["device"] in ("cpu", "mps") or result.info["device"].startswith("cuda")
    assert result.lines()[0].startswith(f"Python {sys.version.split()[0]}, torch {torch.__version__}")


def test_python_check_shows_the_exact_error(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True,
                   timeout=120)
    result = interpreter_check.check_python(str(tmp_path / "bare" / "bin" / "python"))
    assert not result.ok and result.error.startswith("ModuleNotFoundError: No module named 'torch'")
    # the first line (the one the operator reports) names the error, never "Traceback (most recent call last):"
    assert result.lines()[0] == "Error: ModuleNotFoundError: No module named 'torch'"
    assert "Set Up Engine" in result.lines()[1] and "Traceback" not in result.error
    missing = interpreter_check.check_python(str(tmp_path / "nothing"))
    assert not missing.ok and "does not exist" in missing.error
    slow = interpreter_check.PythonCheck(sys.executable)
    time.sleep(0.01)
    assert "did not finish the check within" in slow.poll_with_timeout(0.0).error


def test_parse_check_output():
    ok = interpreter_check.parse_check_output(0, 'noise\nCSD_CHECK {"python": "3.11.7", "torch": "2.13"}\n', "")
    assert ok.ok and ok.info["torch"] == "2.13"
    last = "ImportError: libcudart.so.12: cannot open shared object"
    bad = interpreter_check.parse_check_output(1, "", f"Traceback (most recent call last):\n  File x\n{last}\n")
    assert not bad.ok and bad.error.splitlines()[-1] == last


def test_job_state_text():
    job = engine_session.JobState("j", "texture", "Suzanne", stage="optimising", step=5, total=20, eta_s=75)
    assert job.fraction == 0.25 and job.text() == "Optimising, step 5/20, ETA 1 min 15 s"
    job.cancel_requested = True
    assert job.text() == "Cancelling..."
    assert engine_session.format_duration(3725) == "1 h 02 min"
    assert engine_session.format_bytes(3 * 2**30 // 2) == "1.5 GiB"
