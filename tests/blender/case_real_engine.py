"""The add-on against a real engine subprocess (`python -m engine serve`, CPU) on the bundled toy prior.

Headless bpy, the extension installed from its zip, LOCAL engine mode with this test's interpreter.
Jobs use the trained toy prior (engine/assets/toy_prior) when it is there, else an untrained prior of the same
layout written by engine.testing.tiny_models (in a subprocess: torch never enters the Blender process).
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import os
import signal
import subprocess
import sys
import time

import bpy
import numpy as np
import pytest

TOY_PRIOR = bpy_env.ROOT / "engine" / "assets" / "toy_prior" / "model_index.json"


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture(scope="module")
def session(ext):
    session = bpy_env.start_local_engine()
    yield session
    session.stop()
    assert session.process is None


@pytest.fixture(scope="module")
def model(session):
    """"" (the default "toy" model) when the trained toy prior exists, else a tiny untrained one's folder."""
    if TOY_PRIOR.exists():
        return ""
    folder = bpy_env.HOME / "tiny_toy"
    code = f"from engine.testing.tiny_models import save_tiny_toy; save_tiny_toy({str(folder)!r})"
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
    return bpy_env.submodule("scene.images").array_from_image(obj.data.materials[-1].node_tree.nodes["CSD Texture"].image)



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
    helper = bpy_env.when(running, lambda: setattr(session.job, "cancel_requested", True))
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
    helper = bpy_env.when(running, lambda: os.killpg(pid, signal.SIGKILL))
    with pytest.raises(RuntimeError, match="the engine did not answer"):
        bpy.ops.csd.texture_from_text()
    helper.join()
    assert bpy_env.counts() == before
    assert session.state == "dead" and not session.connected
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected and session.process.pid != pid


def test_uvs_outside_0_1_get_the_warning_and_unwrap_gives_a_new_uv_map(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    layer = obj.data.uv_layers["UVMap"]
    uvs = np.empty(len(layer.data) * 2, dtype=np.float32)
    layer.data.foreach_get("uv", uvs)
    layer.data.foreach_set("uv", uvs * 2.0)          # spread over UDIM tiles 1001, 1002, 1011, 1012
    _configure(steps=4, size=64, seed=3, model=model)
    before = bpy_env.counts()
    with pytest.raises(RuntimeError, match="lies outside the 0-1 square \\(UDIM tiles 1001, 1002, 1011, 1012\\)"):
        bpy.ops.csd.texture_from_text()
    assert bpy_env.counts() == before and session.connected

    assert bpy.ops.csd.texture_from_text(uv_action="UNWRAP") == {"FINISHED"}
    mesh = obj.data
    assert [uv.name for uv in mesh.uv_layers] == ["UVMap", "CSD_UV"]
    kept = np.empty(len(layer.data) * 2, dtype=np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", kept)
    np.testing.assert_array_equal(kept, uvs * 2.0)                 # the user's UV map is untouched
    material = obj.material_slots[0].material
    assert material.node_tree.nodes["CSD UV Map"].uv_map == "CSD_UV"
    texture = bpy_env.submodule("scene.images").array_from_image(material.node_tree.nodes["CSD Texture"].image)
    assert texture.shape == (64, 64, 4) and np.isfinite(texture).all() and texture[..., :3].std() > 0.01
    report = _new_uv_report(obj)
    print(f"engine unwrap of Suzanne: outside {report.outside:.3f}, overlap {report.overlap:.3f}")
    assert report.outside == 0.0 and report.coverage > 0.3


def _new_uv_report(obj):
    """uv_check's report of the CSD_UV map as Blender stores it (per loop, not per triangle)."""
    scene_mesh, uv_check = bpy_env.submodule("scene.mesh"), bpy_env.submodule("scene.uv_check")
    mesh = obj.data
    new = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers["CSD_UV"].data.foreach_get("uv", new)
    return uv_check.uv_report(scene_mesh.corner_uvs(new.reshape(-1, 2), scene_mesh.triangle_loops(mesh)), "CSD_UV")


@pytest.mark.xfail(strict=True, reason="known defect: xatlas unwraps triangles and may cut a seam through a quad; "
                                       "Blender stores UVs per polygon corner, so the first triangle of such a quad "
                                       "gets the other's UVs (a texture mismatch there). Remove this mark once the "
                                       "unwrap keeps each polygon in one chart")
def test_engine_unwrap_keeps_every_polygon_in_one_chart(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    _configure(steps=1, size=64, seed=3, model=model)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert _new_uv_report(obj).problems() == []
