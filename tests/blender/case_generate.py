"""Text to mesh in headless Blender against a real engine subprocess (CPU, bundled toy prior): the operator
adds one object at the 3D cursor with its own material and packed image, one undo removes it, and a cancel or
an engine kill leaves the scene as it was."""

from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import os
import signal

import bpy
import pytest

from case_real_engine import ext, session  # noqa: F401  (fixtures: the extension, a local CPU engine)


def test_the_engine_offers_text_to_mesh(session):
    assert "generate" in session.hello.tasks


def _configure(prompt="a red cube", steps_coarse=4, steps_refine=2):
    s = bpy.context.scene.csd_generate
    s.prompt, s.quality, s.refine = prompt, "fast", "geometry"
    s.steps_coarse, s.steps_refine, s.face_budget, s.size = steps_coarse, steps_refine, 600, 0.5
    s.seed, s.use_random_seed = 2, False
    bpy.context.scene.csd.model = ""
    bpy.context.scene.csd.progress_every = 1
    return s



def test_one_object_at_the_cursor_with_its_material_and_packed_image_and_one_undo_removes_it(session):
    bpy_env.reset_scene()
    bpy_env.add_suzanne()
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    bpy.context.scene.cursor.location = (1.0, -2.0, 0.5)
    _configure()
    ops = bpy_env.submodule("operators.generate")
    assert {"REGISTER", "UNDO"} <= ops.CSD_OT_text_to_mesh.bl_options
    stages = []
    helper = bpy_env.when(
        lambda: session.job is not None and session.job.stage == "refine", lambda: stages.append("refine")
    )
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo_push(message="before the job")
        before = bpy_env.counts()
        names = set(bpy.data.objects.keys())
        assert bpy.ops.csd.text_to_mesh() == {"FINISHED"}
        bpy.ops.ed.undo_push(message=ops.CSD_OT_text_to_mesh.bl_label)  # what Blender does after an UNDO op
        helper.join()
        new = [bpy.data.objects[n] for n in set(bpy.data.objects.keys()) - names]
        assert len(new) == 1, new
        obj = new[0]
        assert tuple(round(c, 5) for c in obj.location) == (1.0, -2.0, 0.5)
        assert bpy.context.view_layer.objects.active == obj and obj.select_get()
        assert 0 < len(obj.data.polygons) <= 600 and "UVMap" in obj.data.uv_layers
        dims = obj.dimensions
        assert abs(max(dims) - 0.5) < 1e-3
        mats = [m for m in obj.data.materials if m is not None]
        assert len(mats) == 1
        image = mats[0].node_tree.nodes["CSD Texture"].image
        assert image.packed_file is not None and image.size[0] > 0
        assert obj.csd.results[0].task == "generate" and "a red cube" in obj["csd_params"]
        counts = bpy_env.counts()
        assert counts["objects"] == before["objects"] + 1 and counts["meshes"] == before["meshes"] + 1
        assert counts["materials"] == before["materials"] + 1 and counts["images"] >= before["images"] + 1
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert not (set(bpy.data.objects.keys()) - names)
    after = bpy_env.counts()
    assert {k: after[k] for k in ("objects", "meshes", "materials")} == {
        k: before[k] for k in ("objects", "meshes", "materials")
    }
    assert stages == ["refine"]  # the panel saw the refine stage's progress


def test_cancel_leaves_the_scene_as_it_was(session):
    bpy_env.reset_scene()
    _configure(steps_coarse=500)
    before = bpy_env.counts()
    running = lambda: session.job is not None and session.job.stage == "coarse" and session.job.step >= 1
    helper = bpy_env.when(running, lambda: setattr(session.job, "cancel_requested", True))
    assert bpy.ops.csd.text_to_mesh() == {"CANCELLED"}
    helper.join()
    assert bpy_env.counts() == before and session.connected


def test_engine_killed_mid_job_leaves_the_scene_as_it_was(session):
    bpy_env.reset_scene()
    _configure(steps_coarse=500)
    before = bpy_env.counts()
    pid = session.process.pid
    running = lambda: session.job is not None and session.job.step >= 1
    helper = bpy_env.when(running, lambda: os.killpg(pid, signal.SIGKILL))
    with pytest.raises(RuntimeError, match="the engine did not answer"):
        bpy.ops.csd.text_to_mesh()
    helper.join()
    assert bpy_env.counts() == before
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected and session.process.pid != pid


def test_an_empty_prompt_is_refused_before_anything_is_sent(session):
    bpy_env.reset_scene()
    _configure(prompt="   ")
    before = bpy_env.counts()
    assert not bpy.ops.csd.text_to_mesh.poll()
    assert bpy_env.counts() == before


def test_panel_shows_the_settings_the_operator_and_why_it_cannot_start(ext):
    from types import SimpleNamespace

    from case_panels import Recorder

    bpy_env.reset_scene()
    panel = bpy_env.panels().CSD_PT_text_to_mesh
    assert panel is bpy_env.submodule("panels.generate").CSD_PT_text_to_mesh

    def draw():
        calls: list = []
        panel.draw(SimpleNamespace(layout=Recorder(calls)), bpy.context)
        return calls

    _configure(prompt="")
    calls = draw()
    labels = [c[1] for c in calls if c[0] == "label"]
    props = [c[1] for c in calls if c[0] == "prop"]
    assert {"prompt", "negative_prompt", "quality", "refine", "face_budget", "size", "seed"} <= set(props)
    assert ("operator", "csd.text_to_mesh", None, False) in calls and "Enter a prompt" in labels
    assert any("3D cursor" in text for text in labels)
    bpy.context.scene.csd_generate.refine = "none"
    assert "steps_refine" not in [c[1] for c in draw() if c[0] == "prop"]
    _configure(prompt="a red teapot")
    labels = [c[1] for c in draw() if c[0] == "label"]
    assert "Enter a prompt" not in labels and any(
        "teapot" in text for text in labels
    )  # unknown toy word flagged
