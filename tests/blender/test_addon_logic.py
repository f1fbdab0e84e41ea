"""Add-on logic without Blender: job parameters from settings, the engine session on a fake engine, the
interpreter check against real interpreters."""
from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from csd_blender import engine_session, job_params
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.jobs import TextureParams
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
    result = engine_session.check_python(sys.executable)
    assert result.ok, result.error
    import torch

    assert result.info["torch"] == torch.__version__ and result.info["engine"] == "0.1.0"
    assert result.info["device"] in ("cpu", "mps") or result.info["device"].startswith("cuda")
    assert result.lines()[0].startswith(f"Python {sys.version.split()[0]}, torch {torch.__version__}")


def test_python_check_shows_the_exact_error(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True,
                   timeout=120)
    result = engine_session.check_python(str(tmp_path / "bare" / "bin" / "python"))
    assert not result.ok and result.error.endswith("ModuleNotFoundError: No module named 'torch'")
    assert result.lines()[-1] == "ModuleNotFoundError: No module named 'torch'"
    missing = engine_session.check_python(str(tmp_path / "nothing"))
    assert not missing.ok and "does not exist" in missing.error
    slow = engine_session.PythonCheck(sys.executable)
    time.sleep(0.01)
    assert "did not finish the check within" in slow.poll_with_timeout(0.0).error


def test_parse_check_output():
    ok = engine_session.parse_check_output(0, 'noise\nCSD_CHECK {"python": "3.11.7", "torch": "2.13"}\n', "")
    assert ok.ok and ok.info["torch"] == "2.13"
    last = "ImportError: libcudart.so.12: cannot open shared object"
    bad = engine_session.parse_check_output(1, "", f"Traceback (most recent call last):\n  File x\n{last}\n")
    assert not bad.ok and bad.error.splitlines()[-1] == last


def test_job_state_text():
    job = engine_session.JobState("j", "texture", "Suzanne", stage="optimising", step=5, total=20, eta_s=75)
    assert job.fraction == 0.25 and job.text() == "Optimising, step 5/20, ETA 1 min 15 s"
    job.cancel_requested = True
    assert job.text() == "Cancelling..."
    assert engine_session.format_duration(3725) == "1 h 02 min"
    assert engine_session.format_bytes(3 * 2**30 // 2) == "1.5 GiB"


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5555", True),
    ("ipc:///tmp/csd", True), ("tcp://10.0.0.2:5555", False), ("tcp://gpu-box:5555", False),
])
def test_is_loopback(endpoint, local):
    assert engine_session.is_loopback(endpoint) is local
