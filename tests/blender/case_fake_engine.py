"""Add-on operators on a fake engine over a real socket (headless bpy): results, refusals, cancel, death."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import json

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
    with pytest.raises(RuntimeError, match="the engine did not answer"):
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
