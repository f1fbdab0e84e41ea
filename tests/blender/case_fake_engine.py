"""Add-on operators on a fake engine over a real socket (headless bpy): results, refusals, cancel, death."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import json
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from fake_zmq_engine import FakeEngine, fake_texture, fake_unwrap, png_rgb


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture
def session(ext):
    return bpy_env.submodule("link.session").SESSION


@pytest.fixture
def engine(ext, session):
    """A fake engine the add-on is connected to (REMOTE mode)."""
    bpy_env.reset_scene()
    fake = FakeEngine(step_s=0.03)
    fake.start()
    prefs = bpy_env.preferences()
    prefs.engine_mode = "REMOTE"
    prefs.endpoint = fake.endpoint
    prefs.token = fake.token
    prefs.key_folder = ""
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected
    yield fake
    session.stop()
    fake.stop()


def _configure(prompt="a red striped cube", steps=4, size=64, seed=7):
    s = bpy.context.scene.csd
    s.prompt, s.steps, s.texture_size, s.seed, s.use_random_seed = prompt, steps, size, seed, False
    s.camera_mode = "AUTO"
    return s



def _running_step(session, n=1):
    return lambda: session.job is not None and session.job.step >= n


# ---------------------------------------------------------------------------------------------- refusals
def test_refuses_without_engine_mesh_or_prompt(ext, session):
    bpy_env.reset_scene()
    session.stop()
    ops = bpy_env.submodule("operators.texture")
    obj = bpy_env.add_suzanne()
    _configure()
    assert ops.texture_block_reason(bpy.context) == "Start the engine first (Engine panel)"
    with pytest.raises(RuntimeError, match="Start the engine first"):
        bpy.ops.csd.texture_from_text()
    bpy.context.scene.csd.prompt = "   "
    assert ops.texture_block_reason(bpy.context) == "Enter a prompt"
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(cam)
    bpy.context.view_layer.objects.active = cam
    assert "is a camera, not a mesh" in ops.texture_block_reason(bpy.context)
    with pytest.raises(RuntimeError, match="not a mesh"):
        bpy.ops.csd.texture_from_text()
    bpy.context.view_layer.objects.active = obj


def test_refusals_with_a_running_engine(engine, session):
    obj = bpy_env.add_suzanne()
    _configure(prompt="")
    with pytest.raises(RuntimeError, match="Enter a prompt"):
        bpy.ops.csd.texture_from_text()
    s = _configure()
    s.camera_mode = "COLLECTION"
    with pytest.raises(RuntimeError, match="camera collection"):
        bpy.ops.csd.texture_from_text()
    bpy.ops.object.camera_add()
    with pytest.raises(RuntimeError, match="not a mesh"):
        bpy.ops.csd.texture_from_text()
    assert engine.submitted == [] and obj.name in bpy.data.objects


def test_wrong_token_is_reported(ext, session):
    bpy_env.reset_scene()
    session.stop()
    with FakeEngine() as fake:
        prefs = bpy_env.preferences()
        prefs.engine_mode, prefs.endpoint, prefs.token = "REMOTE", fake.endpoint, "not-the-token"
        with pytest.raises(RuntimeError, match="wrong token"):
            bpy.ops.csd.engine_start()
        assert not session.connected and "wrong token" in session.last_error


# ---------------------------------------------------------------------------------------------- results
def test_texture_job_creates_material_image_and_keeps_the_old_material(engine, session):
    obj = bpy_env.add_suzanne()
    original = obj.data.materials[0]
    _configure(steps=4, size=64, seed=7)
    before = bpy_env.counts()
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert session.job is None

    params, arrays = engine.submitted[-1]
    assert params.prompt == "a red striped cube" and params.steps == 4 and params.texture_size == 64
    assert params.seed == 7 and params.model == "toy"
    assert arrays["vertices"].dtype == np.float32 and arrays["faces"].dtype == np.int32
    assert arrays["faces"].shape == (968, 3) and arrays["uvs"].shape == (968, 3, 2)
    assert "c2w" not in arrays                                     # automatic orbit

    after = bpy_env.counts()
    assert after["materials"] == before["materials"] + 1
    assert after["images"] == before["images"] + 2                 # the texture and the kept live preview
    assert after["meshes"] == before["meshes"] and after["objects"] == before["objects"]
    # slot 0 now holds a copy of "Original" driven by the texture; "Original" stays in the file, untouched
    mat = obj.data.materials[0]
    assert len(obj.data.materials) == 1 and mat != original and original.name in bpy.data.materials
    assert mat["csd_source"] == original and original.users >= 1
    indices = np.empty(len(obj.data.polygons), dtype=np.int32)
    obj.data.polygons.foreach_get("material_index", indices)
    assert np.all(indices == 0)

    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    link = bsdf.inputs["Base Color"].links[0]
    tex_node = link.from_node
    assert tex_node.type == "TEX_IMAGE"
    uv_node = tex_node.inputs["Vector"].links[0].from_node
    assert uv_node.type == "UVMAP" and uv_node.uv_map == obj.data.uv_layers.active.name == "UVMap"
    image = tex_node.image
    assert image.packed_file is not None and not image.is_float and tuple(image.size) == (64, 64)
    assert bytes(image.packed_file.data[:8]) == b"\x89PNG\r\n\x1a\n"      # an 8-bit PNG, not a float EXR
    assert image.colorspace_settings.name == "sRGB"
    pixels = bpy_env.submodule("scene.images").array_from_image(image)
    assert pixels[..., :3].std() > 0.05                            # not a constant image
    expected = fake_texture(params, 64)
    np.testing.assert_allclose(pixels[..., :3], expected, atol=0.5 / 255 + 1e-6)   # right side up, 8-bit

    stored = json.loads(mat["csd_params"])
    assert stored["seed"] == 7 and stored["prompt"] == params.prompt and stored["task"] == "texture"
    assert obj["csd_params"] == mat["csd_params"] == image["csd_params"]
    assert json.loads(obj["csd_resolved_params"])["texture_size"] == 64
    assert "CSD_UV" not in obj.data.uv_layers                      # the user's UVs were used


def test_stored_settings_reproduce_the_same_request(engine, session):
    obj = bpy_env.add_suzanne()
    s = _configure(seed=0)
    s.use_random_seed = True
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    first_params, _ = engine.submitted[-1]
    images = bpy_env.submodule("scene.images")
    first = images.array_from_image(obj.data.materials[-1].node_tree.nodes["CSD Texture"].image)
    # change everything, then restore from the result
    _configure(prompt="something else", steps=9, size=128, seed=123)
    assert bpy.ops.csd.reuse_settings() == {"FINISHED"}
    assert bpy.context.scene.csd.seed == first_params.seed and not bpy.context.scene.csd.use_random_seed
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    second_params, _ = engine.submitted[-1]
    assert second_params == first_params
    second = obj.data.materials[-1].node_tree.nodes["CSD Texture"].image
    np.testing.assert_array_equal(first, images.array_from_image(second))


def test_mesh_without_uvs_gets_csd_uv_from_the_engine(engine, session):
    obj = bpy_env.add_suzanne(with_material=False)
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    obj.data.update()
    _configure(size=64)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    _, arrays = engine.submitted[-1]
    assert "uvs" not in arrays
    layer = obj.data.uv_layers["CSD_UV"]
    scene_mesh = bpy_env.submodule("scene.mesh")
    tri_loops = scene_mesh.triangle_loops(obj.data)
    loop_uvs = np.empty(len(obj.data.loops) * 2, dtype=np.float32)
    layer.data.foreach_get("uv", loop_uvs)
    got = scene_mesh.corner_uvs(loop_uvs.reshape(-1, 2), tri_loops)
    expected = fake_unwrap(len(arrays["faces"]))
    # corners shared by the two triangles of a quad hold the last triangle's UVs; all others match exactly
    agree = np.isclose(got, expected, atol=1e-6).all(axis=2)
    assert agree.mean() > 0.6
    uv_node = obj.data.materials[-1].node_tree.nodes["CSD UV Map"]
    assert uv_node.uv_map == "CSD_UV"


def test_camera_rig_is_sent_in_our_convention(engine, session):
    obj = bpy_env.add_suzanne()
    s = _configure()
    s.rig_cameras = 6
    before = bpy_env.counts()
    assert bpy.ops.csd.add_camera_rig() == {"FINISHED"}
    assert bpy_env.counts()["cameras"] == before["cameras"] + 6
    assert s.camera_mode == "COLLECTION" and len(s.camera_collection.objects) == 6
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    _, arrays = engine.submitted[-1]
    c2w, intr = arrays["c2w"], arrays["intrinsics"]
    assert c2w.shape == (6, 4, 4) and intr.shape == (6, 6)
    r = bpy.context.scene.render
    assert np.all(intr[:, 4] == r.resolution_x * r.resolution_percentage // 100)
    for m in c2w:                                # every camera's -Z axis points at Suzanne's centre
        forward = -m[:3, 2]
        to_centre = -m[:3, 3] / np.linalg.norm(m[:3, 3])
        assert np.dot(forward, to_centre) > 0.999
        np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-5)


# ---------------------------------------------------------------------------------------------- failures
def test_cancel_leaves_no_new_datablocks(engine, session):
    bpy_env.add_suzanne()
    _configure(steps=200)
    before = bpy_env.counts()
    helper = bpy_env.when(_running_step(session, 2), lambda: setattr(session.job, "cancel_requested", True))
    assert bpy.ops.csd.texture_from_text() == {"CANCELLED"}
    helper.join()
    assert engine.cancelled, "the engine was never told to cancel"
    assert bpy_env.counts() == before
    assert "CSD Preview" not in bpy.data.images and session.job is None and session.connected


def test_engine_error_is_reported_and_leaves_no_datablocks(engine, session):
    bpy_env.add_suzanne()
    _configure()
    engine.fail_code = "out_of_memory"
    before = bpy_env.counts()
    with pytest.raises(RuntimeError, match=r"out_of_memory.*lower the texture size"):
        bpy.ops.csd.texture_from_text()
    assert bpy_env.counts() == before and session.connected


def test_engine_death_mid_job_is_reported_and_the_engine_restarts(engine, session):
    bpy_env.add_suzanne()
    _configure(steps=200)
    before = bpy_env.counts()
    helper = bpy_env.when(_running_step(session, 2), engine.die)
    with pytest.raises(RuntimeError, match="engine died"):
        bpy.ops.csd.texture_from_text()
    helper.join()
    assert bpy_env.counts() == before
    assert session.state == "dead" and not session.connected
    engine_ops = bpy_env.submodule("operators.texture")
    assert engine_ops.texture_block_reason(bpy.context) == "Start the engine first (Engine panel)"
    with FakeEngine() as second:
        prefs = bpy_env.preferences()
        prefs.endpoint, prefs.token = second.endpoint, second.token
        assert bpy.ops.csd.engine_start() == {"FINISHED"}
        assert session.connected
        _configure(steps=2)
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
        session.stop()


def test_release_and_status_lines(engine, session):
    assert bpy.ops.csd.engine_release() == {"FINISHED"}
    lines = session.describe()
    assert any("Fake CPU" in line for line in lines)
    assert any("6.0 GiB free of 8.0 GiB" in line for line in lines)
    assert bpy.ops.csd.engine_stop() == {"FINISHED"}
    assert session.describe() == ["Engine: stopped"]


# ---------------------------------------------------------------------------------------------- previews
def test_preview_png_is_decoded_right_side_up(ext):
    preview = bpy_env.submodule("scene.preview")
    images = bpy_env.submodule("scene.images")
    y, x = np.mgrid[0:12, 0:20]
    rgb = np.stack([x * 12, y * 20, np.full_like(x, 77)], axis=-1).astype(np.uint8)
    flat, w, h = preview.decode_png(png_rgb(rgb))
    assert (w, h) == (20, 12)
    back = images.from_blender_pixels(flat, w, h, srgb=False)
    np.testing.assert_allclose(back[..., :3] * 255, rgb, atol=0.01)
    assert not any(i.name.startswith("preview_") for i in bpy.data.images)


def test_cancel_restores_a_reused_preview_and_success_keeps_it(engine, session):
    bpy_env.add_suzanne()
    old = bpy.data.images.new("CSD Preview", 16, 16, alpha=True)
    old.pixels.foreach_set(np.full(16 * 16 * 4, 0.5, np.float32))
    before = np.empty(16 * 16 * 4, np.float32)
    old.pixels.foreach_get(before)
    _configure(steps=200)
    helper = bpy_env.when(_running_step(session, 3), lambda: setattr(session.job, "cancel_requested", True))
    assert bpy.ops.csd.texture_from_text() == {"CANCELLED"}
    helper.join()
    pixels = np.empty(16 * 16 * 4, np.float32)
    bpy.data.images["CSD Preview"].pixels.foreach_get(pixels)
    np.testing.assert_array_equal(pixels, before)
    assert len(bpy.data.images) == 1
    _configure(steps=3)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    bpy.data.images["CSD Preview"].pixels.foreach_get(pixels)
    assert not np.array_equal(pixels, before) and bpy.data.images["CSD Preview"].packed_file is not None


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


# ---------------------------------------------------------------------------------------------- drawing
ICONS = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()


class RecordingLayout:
    """Stands in for UILayout (headless Blender cannot draw): records calls and checks what they name."""

    def __init__(self, calls: list):
        self.calls = calls
        self.use_property_split = False
        self.scale_y = 1.0
        self.enabled = True

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.calls)

    row = column = box = split = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert search_name in search_data.bl_rna.properties, f"no collection {search_name!r} to search"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("prop_search", name))

    def prop_enum(self, data, name, value, **kwargs):
        assert value in data.bl_rna.properties[name].enum_items.keys(), (name, value)
        self.calls.append(("prop_enum", f"{name}={value}"))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), f"no operator {idname}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("operator", idname))
        return SimpleNamespace()

    def label(self, text="", icon="NONE", **kwargs):
        assert icon in ICONS, icon
        self.calls.append(("label", text))

    def progress(self, factor=0.0, text="", type="BAR"):
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", text))

    def template_icon(self, icon_value=0, scale=1.0):
        self.calls.append(("icon", icon_value))


def _draw(panel_cls):
    calls: list = []
    panel_cls.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    return calls


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
