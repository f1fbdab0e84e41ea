"""Issue 22 acceptance in headless Blender against a real engine subprocess (CPU, bundled toy prior): editing an
object whose Base Color is a 4096² RGBA float texture works end to end (it travels as float16, 128 MiB, within
the engine's limits), and a texture too large for the limits is refused at once with a message naming the limit,
never sent and never waited for."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)  # isort: skip

import dataclasses
import time

import bpy
import numpy as np
import pytest

from case_real_engine import ext, session  # noqa: F401  (fixtures: the extension, a local CPU engine)

SIDE = 4096


@pytest.fixture(scope="module", autouse=True)
def few_steps(session):
    job_params = bpy_env.submodule("props.job_params")
    original = job_params.edit_params
    job_params.edit_params = lambda *a, **k: dataclasses.replace(original(*a, **k), fit_max_steps=3, batch_size=1,
                                                                 render_size=32)
    yield
    job_params.edit_params = original


def _textured_sphere(width: int, height: int):
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.0)
    obj = bpy.context.active_object
    img = bpy.data.images.new("Big", width=width, height=height, alpha=True, float_buffer=True)
    rows = np.where((np.arange(height) // 256 % 2 == 0)[:, None], [0.8, 0.05, 0.05, 1.0], [0.9, 0.9, 0.9, 1.0])
    img.pixels.foreach_set(np.broadcast_to(rows[:, None, :], (height, width, 4)).astype(np.float32).ravel())
    bpy_env.paint(obj, img)
    return obj


def _configure():
    s = bpy.context.scene.csd_edit
    s.target_prompt, s.edit_prompt = "a blue striped sphere", "a red striped sphere"
    s.strength, s.preserve, s.geometry, s.quality, s.steps, s.seed = 1.0, 0.5, False, "fast", 2, 1
    bpy.context.scene.csd.model = ""
    bpy.context.scene.csd.progress_every = 1


def test_a_4096_rgba_float_texture_is_edited_end_to_end(session):
    bpy_env.reset_scene()
    obj = _textured_sphere(SIDE, SIDE)
    name = obj.name
    _configure()
    assert session.client.minor >= 1 and session.hello.limits["max_buffer_bytes"] >= SIDE * SIDE * 4 * 2
    assert bpy.ops.csd.edit_object() == {"FINISHED"}
    image = bpy.data.objects[name].material_slots[0].material.node_tree.nodes["CSD Texture"].image
    assert tuple(image.size) == (SIDE, SIDE)


def test_a_texture_over_the_limits_is_refused_at_once_naming_the_limit(session):
    bpy_env.reset_scene()
    _textured_sphere(SIDE + 64, 64)
    _configure()
    before = bpy_env.counts()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="4096"):
        bpy.ops.csd.edit_object()
    assert time.monotonic() - started < 5.0
    assert bpy_env.counts() == before and session.job is None
