"""Add-on operators on a fake engine, the interactive path (headless bpy): the modal job driven by stand-in
timer and Esc events, batches, panels and preferences drawn in every state, a background engine start, the UV
map choice."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from case_fake_engine import _configure, _running_step, engine, ext, session  # noqa: F401  (fixtures)
from fake_zmq_engine import FakeEngine
from ui_record import RecordingLayout, _draw


# ---------------------------------------------------------------------------------------------- modal path
# Headless Blender has no event loop: the tests start the operator modal (as in the UI) and deliver the
# TIMER / ESC events themselves by calling its modal() with stand-in events.
@pytest.fixture
def modal(engine, session, monkeypatch):
    ops = bpy_env.submodule("operators.texture")
    monkeypatch.setattr(bpy_env.submodule("operators.job_operator"), "run_synchronously", lambda: False)

    def start():
        assert bpy.ops.csd.texture_from_text("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
        op = bpy.context.window.modal_operators[-1]
        assert op.bl_idname == "CSD_OT_texture_from_text"
        return op

    def send(op, event_type, value="NOTHING"):
        event = SimpleNamespace(type=event_type, value=value)
        return ops.CSD_OT_texture_from_text.modal(op, bpy.context, event)

    def run(op, until=lambda: False, max_ticks=500):
        for _ in range(max_ticks):
            if until():
                return None
            status = send(op, "TIMER")
            if status != {"PASS_THROUGH"}:
                return status
            time.sleep(0.01)
        raise AssertionError("the modal operator did not finish")

    return SimpleNamespace(start=start, send=send, run=run)


def test_modal_job_finishes_on_timer_ticks(modal, session):
    obj = bpy_env.add_suzanne()
    _configure(steps=4)
    before = bpy_env.counts()
    op = modal.start()
    assert session.job is not None and bpy_env.counts() == before      # nothing created while it runs
    assert modal.send(op, "MOUSEMOVE") == {"PASS_THROUGH"}            # the UI stays usable
    assert modal.run(op) == {"FINISHED"}
    assert session.job is None and op._timer is None
    assert bpy_env.counts()["materials"] == before["materials"] + 1 and len(obj.data.materials) == 1


def test_modal_escape_cancels_the_engine_job(modal, engine, session):
    bpy_env.add_suzanne()
    _configure(steps=300)
    before = bpy_env.counts()
    op = modal.start()
    assert modal.run(op, until=lambda: session.job.previews >= 2) is None
    assert bpy_env.counts()["images"] == before["images"] + 1         # the live preview
    assert modal.send(op, "ESC", "PRESS") == {"RUNNING_MODAL"}
    assert modal.run(op) == {"CANCELLED"}
    assert engine.cancelled and bpy_env.counts() == before and op._timer is None


def test_modal_batch_escape_after_the_first_result_leaves_the_others(modal, engine, session):
    ops = bpy_env.submodule("operators.texture")
    objs = [bpy_env.add_suzanne() for _ in range(3)]
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objs[0]
    _configure(steps=40)
    before = [[sl.material.name for sl in o.material_slots] for o in objs]
    assert bpy.ops.csd.texture_selected("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
    op = bpy.context.window.modal_operators[-1]
    assert op.bl_idname == "CSD_OT_texture_selected"

    def tick(event_type="TIMER", value="NOTHING"):
        return ops.CSD_OT_texture_selected.modal(op, bpy.context, SimpleNamespace(type=event_type, value=value))

    fractions = []
    for _ in range(2000):
        assert tick() == {"PASS_THROUGH"}
        job = session.job
        if job is not None:
            assert job.batch_total == 3                                    # one progress for the batch
            fractions.append(job.fraction)
            if job.batch_index == 1 and job.step >= 1:
                break
        time.sleep(0.005)
    assert len(objs[0].csd.results) == 1 and fractions == sorted(fractions) and 1 / 3 < fractions[-1] < 2 / 3
    assert tick("ESC", "PRESS") == {"RUNNING_MODAL"}
    status = None
    for _ in range(500):
        status = tick()
        if status != {"PASS_THROUGH"}:
            break
        time.sleep(0.01)
    assert status == {"FINISHED"} and engine.cancelled and session.job is None
    assert [[sl.material.name for sl in o.material_slots] for o in objs[1:]] == before[1:]
    assert [len(o.csd.results) for o in objs] == [1, 0, 0]
    assert len(engine.submitted) == 2                                      # the third was never sent


def test_cancel_operator_stops_a_modal_job(modal, engine, session):
    bpy_env.add_suzanne()
    _configure(steps=300)
    before = bpy_env.counts()
    op = modal.start()
    assert modal.run(op, until=lambda: session.job.step >= 1) is None
    assert bpy.ops.csd.cancel() == {"FINISHED"}
    assert modal.run(op) == {"CANCELLED"}
    assert bpy_env.counts() == before
    with pytest.raises(RuntimeError, match="No job is running"):
        bpy.ops.csd.cancel()


def test_blender_ending_the_operator_cancels_the_job(modal, engine, session):
    bpy_env.add_suzanne()
    _configure(steps=300)
    op = modal.start()
    assert modal.run(op, until=lambda: session.job.step >= 1) is None
    bpy.ops.wm.read_homefile(use_empty=True)       # Blender calls the operator's cancel()
    assert session.job is None
    deadline = time.monotonic() + 5
    while not engine.cancelled:
        assert time.monotonic() < deadline, "the engine job was not cancelled"
        time.sleep(0.01)


def test_panels_draw_in_every_state(modal, engine, session):
    panels = bpy_env.panels()
    obj = bpy_env.add_suzanne()
    _configure(steps=300)
    idle = _draw(panels.CSD_PT_texture)
    assert ("operator", "csd.texture_from_text") in idle and ("prop", "prompt") in idle
    assert ("operator", "csd.engine_stop") in _draw(panels.CSD_PT_engine)
    bpy.context.scene.csd.camera_mode = "COLLECTION"
    assert ("label", "Choose a camera collection with perspective cameras, or use the automatic orbit") in \
        _draw(panels.CSD_PT_texture)
    bpy.context.scene.csd.camera_mode = "AUTO"

    op = modal.start()
    modal.run(op, until=lambda: session.job.previews >= 1)
    running = _draw(panels.CSD_PT_texture)
    assert ("operator", "csd.cancel") in running and any(c[0] == "progress" for c in running)
    assert any(c[0] == "icon" for c in running)
    assert modal.send(op, "ESC", "PRESS") == {"RUNNING_MODAL"}
    assert modal.run(op) == {"CANCELLED"}

    _configure(steps=2)
    op = modal.start()
    assert modal.run(op) == {"FINISHED"}
    bpy.context.view_layer.objects.active = obj
    assert ("operator", "csd.reuse_settings") in _draw(panels.CSD_PT_texture)
    session.stop()
    assert ("operator", "csd.engine_start") in _draw(panels.CSD_PT_engine)


def test_preferences_draw_in_both_modes(ext):
    preferences = bpy_env.submodule("preferences")
    prefs = bpy_env.preferences()
    for mode in ("LOCAL", "REMOTE"):
        prefs.engine_mode = mode
        calls: list = []

        class Owner:                       # the real preferences, with a recording layout
            layout = RecordingLayout(calls)

            def __getattr__(self, name):
                return getattr(prefs, name)

        preferences.CSDPreferences.draw(Owner(), bpy.context)
        names = {c[1] for c in calls if c[0] == "prop"}
        assert ("python_path" in names) == (mode == "LOCAL") and ("endpoint" in names) == (mode == "REMOTE")


def test_check_button_reports_the_interpreter(ext):
    import sys

    prefs = bpy_env.preferences()
    prefs.python_path = sys.executable
    assert bpy.ops.csd.check_python() == {"FINISHED"}
    assert prefs.check_report.startswith("Python 3.") and "torch" in prefs.check_report
    prefs.python_path = str(bpy_env.HOME / "missing-python")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.csd.check_python()
    assert "does not exist" in prefs.check_report


def test_edit_mode_is_refused_and_left_at_apply(modal, session):
    obj = bpy_env.add_suzanne()
    _configure(steps=3)
    bpy.ops.object.mode_set(mode="EDIT")
    with pytest.raises(RuntimeError, match="Switch to Object Mode"):
        bpy.ops.csd.texture_from_text()
    bpy.ops.object.mode_set(mode="OBJECT")
    op = modal.start()
    bpy.ops.object.mode_set(mode="EDIT")            # the user enters Edit Mode while the job runs
    assert modal.run(op) == {"FINISHED"}
    assert obj.mode == "OBJECT" and len(obj.data.materials) == 1 and "csd_result" in obj.data.materials[0]


def test_mesh_edited_during_an_unwrap_job_is_not_written(modal, session):
    obj = bpy_env.add_suzanne(with_material=False)
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    obj.data.update()
    _configure(steps=3)
    before = bpy_env.counts()
    op = modal.start()
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    bpy.ops.mesh.subdivide()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert modal.run(op) == {"CANCELLED"}
    assert bpy_env.counts() == before and "CSD_UV" not in obj.data.uv_layers


def test_one_undo_step_returns_to_the_state_before_the_job(engine, session):
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    obj = bpy_env.add_suzanne()
    obj.data.uv_layers.remove(obj.data.uv_layers[0])     # the job also adds the CSD_UV map
    obj.data.update()
    _configure(steps=2)
    ops = bpy_env.submodule("operators.texture")
    assert {"REGISTER", "UNDO"} <= ops.CSD_OT_texture_from_text.bl_options
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo_push(message="before the job")
        before = bpy_env.counts()
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
        # what Blender does when an UNDO operator finishes (undo=True in bpy.ops crashes headless bpy 5.0.1)
        bpy.ops.ed.undo_push(message=ops.CSD_OT_texture_from_text.bl_label)
        obj = bpy.data.objects["Suzanne"]
        assert len(obj.data.materials) == 1 and "CSD_UV" in obj.data.uv_layers
        assert bpy.ops.ed.undo() == {"FINISHED"}
    obj = bpy.data.objects["Suzanne"]
    assert bpy_env.counts() == before
    assert [m.name for m in obj.data.materials] == ["Original"] and len(obj.data.uv_layers) == 0
    assert "csd_params" not in obj


# ---------------------------------------------------------------------------------------------- start
def test_a_background_start_is_finished_by_the_persistent_timer(ext, session):
    """Interactive Blender starts the engine on a worker thread; the app timer adopts it (also after a file load
    removed the modal operator) and the job buttons explain the wait meanwhile."""
    bpy_env.reset_scene()
    session.stop()
    ops_engine, ops_jobs = bpy_env.submodule("operators.engine"), bpy_env.submodule("operators.texture")
    with FakeEngine() as fake:
        prefs = bpy_env.preferences()
        prefs.engine_mode, prefs.endpoint, prefs.token, prefs.key_folder = "REMOTE", fake.endpoint, fake.token, ""
        bpy_env.add_suzanne()
        _configure()
        session.begin_start(bpy_env.submodule("props.prefs").engine_settings())
        assert ops_jobs.texture_block_reason(bpy.context) == "The engine is still starting"
        assert not bpy.ops.csd.engine_start.poll() and bpy.ops.csd.engine_stop.poll()
        deadline = time.monotonic() + 10
        while ops_engine._watch_start() is not None:         # what bpy.app.timers would call
            assert time.monotonic() < deadline, "the start never finished"
            time.sleep(0.05)
        assert session.connected and ops_jobs.texture_block_reason(bpy.context) == ""
        session.stop()
        assert session.state == "stopped"


def _loop_uvs(layer) -> np.ndarray:
    data = np.empty(len(layer.data) * 2, dtype=np.float32)
    layer.data.foreach_get("uv", data)
    return data.reshape(-1, 2)


def _sent_uvs_equal(engine, obj, layer_name: str) -> bool:
    scene_mesh = bpy_env.submodule("scene.mesh")
    _, arrays = engine.submitted[-1]
    expected = scene_mesh.corner_uvs(_loop_uvs(obj.data.uv_layers[layer_name]), scene_mesh.triangle_loops(obj.data))
    return "uvs" in arrays and np.array_equal(arrays["uvs"], expected)


def test_uv_map_defaults_to_the_render_uv_map_and_can_be_chosen(engine, session):
    obj = bpy_env.add_suzanne()
    mesh = obj.data
    second = mesh.uv_layers.new(name="Second")
    second.data.foreach_set("uv", (_loop_uvs(mesh.uv_layers["UVMap"]) * 0.5).ravel())
    mesh.uv_layers.active = second                 # active for editing; UVMap stays the render UV map
    assert mesh.uv_layers["UVMap"].active_render
    s = _configure(size=64)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert _sent_uvs_equal(engine, obj, "UVMap")
    s.uv_map = "Second"
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert _sent_uvs_equal(engine, obj, "Second")
    s.uv_map = "Nope"
    with pytest.raises(RuntimeError, match="'Suzanne' has no UV map 'Nope' \\(it has: UVMap, Second\\)"):
        bpy.ops.csd.texture_from_text()
    s.uv_map = ""


def test_uvs_outside_0_1_are_refused_until_the_user_chooses(engine, session):
    obj = bpy_env.add_suzanne()
    layer = obj.data.uv_layers["UVMap"]
    layer.data.foreach_set("uv", (_loop_uvs(layer) + [1.0, 0.0]).ravel())     # all in UDIM tile 1002
    _configure(size=64)
    sent, before = len(engine.submitted), bpy_env.counts()
    with pytest.raises(RuntimeError, match="100% of the UV area of 'UVMap' lies outside the 0-1 square "
                                           "\\(UDIM tiles 1002\\).*Unwrap New UV Map"):
        bpy.ops.csd.texture_from_text()
    assert len(engine.submitted) == sent and bpy_env.counts() == before       # nothing sent, nothing made

    warnings = bpy_env.submodule("scene.uv_check").uv_warnings(bpy.context, [obj])
    assert len(warnings) == 1 and warnings[0].startswith("Suzanne: 100% of the UV area of 'UVMap'")
    calls: list = []
    op_type = bpy.types.CSD_OT_texture_from_text
    dialog = SimpleNamespace(layout=RecordingLayout(calls), _uv_warnings=warnings,
                             bl_rna=bpy.ops.csd.texture_from_text.get_rna_type())    # the operator's properties
    op_type.draw(dialog, bpy.context)
    assert ("prop_enum", "uv_action=UNWRAP") in calls and ("prop_enum", "uv_action=KEEP") in calls
    assert any(c[0] == "label" and c[1].startswith("Suzanne: 100% of the UV area") for c in calls)
    redo: list = []                                         # the redo panel: nothing that would re-run the job
    op_type.draw(SimpleNamespace(layout=RecordingLayout(redo), bl_rna=dialog.bl_rna), bpy.context)
    assert redo == []

    assert bpy.ops.csd.texture_from_text(uv_action="KEEP") == {"FINISHED"}
    assert _sent_uvs_equal(engine, obj, "UVMap") and "CSD_UV" not in obj.data.uv_layers
    assert bpy.ops.csd.texture_from_text(uv_action="UNWRAP") == {"FINISHED"}
    assert "uvs" not in engine.submitted[-1][1] and "CSD_UV" in obj.data.uv_layers
    bpy.context.scene.csd.uv_unwrap = True                   # the panel's switch does the same without asking
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"} and "uvs" not in engine.submitted[-1][1]
    bpy.context.scene.csd.uv_unwrap = False
