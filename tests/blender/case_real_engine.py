"""The add-on against a real engine subprocess (`python -m engine serve`, CPU) on the bundled toy prior.

Headless bpy, the extension installed from its zip, LOCAL engine mode with this test's interpreter.
Jobs use the trained toy prior (engine/assets/toy_prior) when it is there, else an untrained prior of the same
layout written by engine.priors.tiny (in a subprocess: torch never enters the Blender process).
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import os
import signal
import subprocess
import sys
import threading
import time

import bpy
import numpy as np
import pytest

TOY_PRIOR = bpy_env.ROOT / "engine" / "assets" / "toy_prior" / "model_index.json"


@pytest.fixture(scope="module")
def ext():
    if not (bpy_env.ROOT / "engine" / "tasks" / "texture.py").exists():
        pytest.skip("the engine's texture task is not there")
    return bpy_env.install()


@pytest.fixture(scope="module")
def session(ext):
    session = bpy_env.submodule("engine_session").SESSION
    prefs = bpy_env.preferences()
    prefs.engine_mode = "LOCAL"
    prefs.python_path = sys.executable
    prefs.device = "cpu"
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected and session.hello.device == "cpu"
    yield session
    session.stop()
    assert session.process is None


@pytest.fixture(scope="module")
def model(session):
    """"" (the default "toy" model) when the trained toy prior exists, else a tiny untrained one's folder."""
    if TOY_PRIOR.exists():
        return ""
    folder = bpy_env.HOME / "tiny_toy"
    code = f"from engine.priors.tiny import save_tiny_toy; save_tiny_toy({str(folder)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    return str(folder)


def _configure(prompt="a blue striped sphere", steps=4, size=64, seed=3, model=""):
    s = bpy.context.scene.csd
    s.prompt, s.steps, s.texture_size, s.seed, s.model = prompt, steps, size, seed, model
    s.use_random_seed = False
    s.progress_every = 1                     # a progress event (and preview) after every step
    s.quality, s.camera_mode, s.controlnet = "fast", "AUTO", "NONE"
    return s


def _texture_of(obj):
    convert = bpy_env.submodule("convert")
    return convert.array_from_image(obj.data.materials[-1].node_tree.nodes["CSD Texture"].image)


def _when(condition, action, timeout=120.0) -> threading.Thread:
    """Run `action` (no bpy) from a helper thread once `condition` holds (the operator blocks this one)."""
    def run():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                action()
                return
            time.sleep(0.01)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_missing_model_is_reported_and_leaves_the_scene_as_it_was(session):
    bpy_env.reset_scene()
    bpy_env.add_suzanne()
    _configure(model=str(bpy_env.HOME / "no-such-model"))
    before = bpy_env.counts()
    with pytest.raises(RuntimeError, match="model_missing"):
        bpy.ops.csd.texture_from_text()
    assert bpy_env.counts() == before and session.connected


def test_texture_on_suzanne_with_automatic_orbit_is_reproducible(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    original = obj.data.materials[0]
    _configure(steps=4, size=64, seed=3, model=model)
    before = bpy_env.counts()
    t0 = time.monotonic()
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    first_s = time.monotonic() - t0
    after = bpy_env.counts()
    assert after["materials"] == before["materials"] + 1 and after["objects"] == before["objects"]
    assert original.name in bpy.data.materials and obj.data.materials[0]["csd_source"] == original
    image = obj.data.materials[-1].node_tree.nodes["CSD Texture"].image
    assert image.packed_file is not None and tuple(image.size) == (64, 64) and not image.is_float
    first = _texture_of(obj)
    print(f"texture std {first[..., :3].std():.4f}")
    assert first[..., :3].std() > 0.01, "the texture is constant"

    assert bpy.ops.csd.reuse_settings() == {"FINISHED"}
    bpy.context.scene.csd.prompt = "changed"                   # reuse restores everything below
    assert bpy.ops.csd.reuse_settings() == {"FINISHED"}
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    second = _texture_of(obj)
    np.testing.assert_allclose(second, first, atol=1e-5)
    print(f"first texture job (model load + 4 steps + bake): {first_s:.1f} s")


def test_camera_rig_job(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    s = _configure(steps=2, size=64, model=model)
    s.rig_cameras = 4
    assert bpy.ops.csd.add_camera_rig() == {"FINISHED"}
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}     # the engine accepted the rig we sent
    texture = _texture_of(obj)
    assert texture.shape == (64, 64, 4) and np.isfinite(texture).all()


def test_cancel_leaves_no_new_datablocks(session, model):
    bpy_env.reset_scene()
    bpy_env.add_suzanne()
    _configure(steps=500, model=model)
    before = bpy_env.counts()
    running = lambda: session.job is not None and session.job.step >= 1  # noqa: E731
    helper = _when(running, lambda: setattr(session.job, "cancel_requested", True))
    assert bpy.ops.csd.texture_from_text() == {"CANCELLED"}
    helper.join()
    assert bpy_env.counts() == before and session.connected


def test_engine_killed_mid_job_then_restarted_from_the_panel_operator(session, model):
    bpy_env.reset_scene()
    bpy_env.add_suzanne()
    _configure(steps=500, model=model)
    before = bpy_env.counts()
    pid = session.process.pid
    running = lambda: session.job is not None and session.job.step >= 1  # noqa: E731
    helper = _when(running, lambda: os.killpg(pid, signal.SIGKILL))
    with pytest.raises(RuntimeError, match="engine died"):
        bpy.ops.csd.texture_from_text()
    helper.join()
    assert bpy_env.counts() == before
    assert session.state == "dead" and not session.connected
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected and session.process.pid != pid
