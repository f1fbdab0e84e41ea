"""The engine server as a real subprocess (`python -m engine serve` through EngineProcess) on real sockets: job
round trips, cancel, two clients' queue, releasing the prior, and the launcher (kill and restart, no orphans).

One engine serves the whole module (tests/engine/conftest.py: torch import and prior load happen once); the kill
test replaces it with a restarted one. Jobs run the texture task on the bundled toy prior. The malformed-input
table and the memory tests run on their own engine in test_server_malformed.py.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from paths import REPO
from server_jobs import ARRAYS, EDIT, FACES, GENERATE, edit_arrays, params, rss_bytes

from csd_blender.link.client import EngineClient, EngineDied, JobResult
from csd_blender.link.process import EngineProcess, EngineStartError
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError

# --- the happy path ---------------------------------------------------------------------------------------


def test_handshake_describes_the_engine(engine, client):
    hello = client.hello
    assert hello.protocol_version == m.PROTOCOL_VERSION_STR and hello.device == "cpu" and "texture" in hello.tasks
    assert set(hello.guidance) == {"csd", "sds"} and hello.memory_total_bytes > 0
    assert set(hello.backends) == {"nvdiffrast", "tinycudann"}
    assert not os.path.exists(Path(engine._tmpdir or "/nonexistent") / "token"), "token file left behind"


def test_texture_job_round_trip(client, prior_dir):
    from PIL import Image

    events = []
    job = client.submit("texture", params(prior_dir, steps=4), ARRAYS)
    result = client.wait(job, timeout_s=120, on_event=events.append)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Accepted" and events[0].queue_position == 0 and kinds[-1] == "JobResult"
    previews = [e.preview_png for e in events if isinstance(e, m.Progress) and e.preview_png]
    assert previews, kinds
    for png in previews:
        image = Image.open(io.BytesIO(png))
        image.load()
        assert image.size[0] > 0 and image.size[1] > 0
    steps = [e.step for e in events if isinstance(e, m.Progress) and e.stage == "optimising"]
    assert steps == sorted(steps) and steps[-1] == 4
    texture = result.arrays["texture"]
    assert texture.shape == (64, 64, 3) and texture.dtype == np.float32 and np.isfinite(texture).all()
    assert result.arrays["uvs"].shape == (len(FACES), 3, 2)
    # the engine hashed the texture it produced; the client must have received exactly those bytes
    assert hashlib.sha256(texture.tobytes()).hexdigest() == result.meta["stats"]["texture_sha256"]
    assert result.meta["params"]["steps"] == 4 and result.meta["cancelled"] is False


def test_generate_job_round_trip(client):
    events = []
    job = client.submit("generate", GENERATE, {})
    result = client.wait(job, timeout_s=300, on_event=events.append)
    stages = [e.stage for e in events if isinstance(e, m.Progress)]
    assert "coarse" in stages and "refine" in stages and stages.index("coarse") < stages.index("refine")
    assert any(e.preview_png for e in events if isinstance(e, m.Progress) and e.stage == "refine")
    a = result.arrays
    v, f, uvs = a["vertices"], a["faces"], a["uvs"]
    assert v.dtype == np.float32 and v.shape[1] == 3 and f.dtype == np.int32 and 0 < len(f) <= 600
    assert f.min() >= 0 and f.max() < len(v) and uvs.shape == (len(f), 3, 2)
    assert a["texture"].shape == (64, 64, 3) and a["turntable_png"].dtype == np.uint8
    assert hashlib.sha256(a["texture"].tobytes()).hexdigest() == result.meta["stats"]["texture_sha256"]
    assert result.meta["params"]["steps_coarse"] == 3


def test_edit_job_round_trip(client):
    arrays = edit_arrays()
    rgba = np.concatenate([np.ascontiguousarray(arrays["texture"][:, :24]), np.full((32, 24, 1), 0.5, np.float32)], 2)
    events = []
    job = client.submit("edit", EDIT, {**arrays, "texture": rgba})
    result = client.wait(job, timeout_s=300, on_event=events.append)
    stages = [e.stage for e in events if isinstance(e, m.Progress)]
    assert stages.index("fitting") < stages.index("optimising") < stages.index("baking")
    a = result.arrays
    assert a["texture"].shape == (32, 24, 4) and a["texture"].dtype == np.float32    # the input's size and alpha
    np.testing.assert_array_equal(a["texture"][..., 3], rgba[..., 3])
    np.testing.assert_array_equal(a["uvs"], arrays["uvs"])
    assert hashlib.sha256(a["texture"].tobytes()).hexdigest() == result.meta["stats"]["texture_sha256"]
    assert a["before_after_png"].dtype == np.uint8 and result.meta["stats"]["fit_steps"] == 3


def test_cancel_stops_within_one_step(client, prior_dir):
    """The job ends within one step's time of the cancel (plus transport slack); the next job runs normally."""
    job = client.submit("texture", params(prior_dir, steps=500), ARRAYS)
    seen: list[m.Progress] = []
    deadline = time.monotonic() + 120
    while len(seen) < 3:  # cancel mid-optimisation, after three steps
        for e in client.poll():
            if isinstance(e, m.Progress) and e.stage == "optimising" and e.step > 0:
                seen.append(e)
            assert not isinstance(e, (m.ErrorReply, EngineDied)), e
        assert time.monotonic() < deadline
        time.sleep(0.01)
    step_s = max(b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(seen)) / max(1, seen[-1].step - seen[0].step)
    t0 = time.monotonic()
    client.cancel(job)
    with pytest.raises(ProtocolError) as info:
        client.wait(job, timeout_s=60)
    waited = time.monotonic() - t0
    assert info.value.code == ErrorCode.CANCELLED
    assert waited <= 2 * step_s + 1.0, f"cancel took {waited:.2f} s with steps of {step_s:.3f} s"
    status = client.status()
    assert status.current is None and status.queue == []


def test_two_clients_queue_in_order(engine, client, prior_dir):
    other = EngineClient(engine.endpoint, engine.token)
    try:
        other.connect(timeout_s=30)
        first = client.submit("texture", params(prior_dir, steps=3), ARRAYS)
        accepted = [e for e in _poll_for(client, m.Accepted)]
        assert accepted[-1].job_id == first and accepted[-1].queue_position == 0
        second = other.submit("texture", params(prior_dir, steps=2, seed=1), ARRAYS)
        queued = _poll_for(other, m.Accepted)[-1]
        assert queued.job_id == second and queued.queue_position == 1
        status = other.status()  # its own queued job; the first client's running job only as a count
        assert status.current is None and status.others_running == 1 and status.queue == [second]
        status = client.status()
        assert status.current["job_id"] == first and status.queue == [] and status.others_queued == 1
        done_first = client.wait(first, timeout_s=120)
        done_second = other.wait(second, timeout_s=120)
        assert done_first.job_id == first and done_second.job_id == second
        assert done_first.meta["stats"]["texture_sha256"] != done_second.meta["stats"]["texture_sha256"]
    finally:
        other.close()


def _poll_for(client: EngineClient, kind: type, timeout_s: float = 30.0) -> list:
    events: list = []
    deadline = time.monotonic() + timeout_s
    while not any(isinstance(e, kind) for e in events):
        assert time.monotonic() < deadline, events
        events += client.poll()
        time.sleep(0.01)
    return [e for e in events if isinstance(e, kind)]


# --- releasing the prior -----------------------------------------------------------------------------------


def _medium_prior(folder: Path) -> tuple[str, int]:
    """The tiny toy layout with a 15 M-parameter UNet (62 MB), big enough to see in the RSS."""
    from diffusers import UNet2DConditionModel

    from engine.testing.tiny_models import save_tiny_toy

    save_tiny_toy(folder, width=128)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    return str(folder), sum(p.numel() * p.element_size() for p in unet.parameters())


def test_release_frees_the_prior(engine, client, tmp_path):
    model, model_bytes = _medium_prior(tmp_path / "medium")
    client.wait(client.submit("texture", params(model, steps=1, progress_every=100), ARRAYS), timeout_s=120)
    assert client.status().priors == [model]
    loaded = rss_bytes(engine.pid)
    released = client.release()
    assert released.priors == [model] and released.memory_allocated_bytes == 0  # CPU: nothing on CUDA
    freed = loaded - rss_bytes(engine.pid)
    assert freed > 0.5 * model_bytes, (freed / 2**20, model_bytes / 2**20)
    assert client.status().priors == []  # the restart test below loads a prior again and runs a job


# --- crash and restart (last: it replaces the module's engine) ---------------------------------------------


def test_kill_is_detected_and_the_launcher_restarts(engine, prior_dir):
    client = EngineClient(engine.endpoint, engine.token)
    try:
        client.connect(timeout_s=30)
        job = client.submit("texture", params(prior_dir, steps=500), ARRAYS)
        deadline = time.monotonic() + 120
        while not any(e.stage == "optimising" for e in _poll_for(client, m.Progress, timeout_s=120)):
            assert time.monotonic() < deadline
        os.kill(engine.pid, signal.SIGKILL)
        killed = time.monotonic()
        died = _poll_for(client, EngineDied, timeout_s=10)
        took = time.monotonic() - killed
        assert took <= 2.05, took
        assert "did not answer" in died[0].reason and not client.alive
        with pytest.raises(ProtocolError) as info:
            client.wait(job, timeout_s=1)
        assert info.value.code == ErrorCode.ENGINE_DIED
    finally:
        client.close()
    assert not engine.is_running()
    endpoint, token = engine.restart(timeout_s=120)
    with EngineClient(endpoint, token) as fresh:
        fresh.connect(timeout_s=30)
        result = fresh.wait(fresh.submit("texture", params(prior_dir, steps=2), ARRAYS), timeout_s=120)
        assert isinstance(result, JobResult) and result.arrays["texture"].shape == (64, 64, 3)


def test_the_launcher_leaves_no_orphan(tmp_path):
    """An engine object that is garbage-collected, or alive when its process exits, takes its engine along."""
    script = f"""
import gc, os, sys
from csd_blender.link.process import EngineProcess
kept = EngineProcess(sys.executable, log_file={str(tmp_path / "kept.log")!r}, device="cpu")
dropped = EngineProcess(sys.executable, log_file={str(tmp_path / "dropped.log")!r}, device="cpu")
kept.start(timeout_s=120)
dropped.start(timeout_s=120)
dropped_pid = dropped.pid
del dropped
gc.collect()
print(kept.pid, dropped_pid, os.path.exists(f"/proc/{{dropped_pid}}"), flush=True)
"""  # exits without stop()
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr
    kept_pid, dropped_pid, dropped_alive = out.stdout.split()[-3:]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{kept_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = [int(pid) for pid in (kept_pid, dropped_pid) if Path(f"/proc/{pid}").exists()]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)  # engines this test started; do not leave them running
    assert dropped_alive == "False" and not orphans, (dropped_alive, orphans)


def test_a_failed_start_reports_the_log_tail(tmp_path):
    proc = EngineProcess(
        sys.executable,
        log_file=tmp_path / "bad.log",
        device="cpu",
        extra_env={"PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
    )
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("raise RuntimeError('broken engine install 42')\n")
    with pytest.raises(EngineStartError) as info:
        proc.start(timeout_s=30)
    assert "broken engine install 42" in str(info.value) and not proc.is_running()
