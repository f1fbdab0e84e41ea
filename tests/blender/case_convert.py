"""scene.cameras, scene.images and scene.mesh against Blender (headless bpy): camera exchange, image round trip, evaluated world mesh."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Vector


@pytest.fixture(scope="module")
def scene_mods():
    bpy_env.install()
    return SimpleNamespace(**{name: bpy_env.submodule(f"scene.{name}") for name in ("cameras", "images", "mesh")})


CAMERAS = [
    # sensor_fit, shift_x, shift_y, res_x, res_y, percentage, pixel_aspect_x, pixel_aspect_y, lens, sensor w/h
    ("AUTO", 0.0, 0.0, 1920, 1080, 100, 1.0, 1.0, 50.0, 36.0, 24.0),
    ("AUTO", 0.1, -0.2, 600, 900, 50, 1.0, 1.0, 35.0, 36.0, 24.0),          # portrait, 50 %
    ("HORIZONTAL", 0.3, 0.1, 640, 480, 100, 1.0, 1.0, 28.0, 32.0, 18.0),
    ("VERTICAL", -0.1, 0.25, 800, 500, 75, 1.0, 1.0, 85.0, 36.0, 20.0),
    ("AUTO", 0.05, 0.1, 640, 480, 100, 2.0, 1.0, 50.0, 36.0, 24.0),          # wide pixels
    ("VERTICAL", 0.1, 0.1, 640, 480, 100, 1.0, 1.5, 40.0, 36.0, 24.0),       # tall pixels
    ("HORIZONTAL", 0.0, 0.2, 300, 700, 50, 1.3, 1.0, 24.0, 36.0, 24.0),
]


IDS = [f"{c[0]}-{c[3]}x{c[4]}@{c[5]}-pa{c[6]}:{c[7]}" for c in CAMERAS]


@pytest.mark.parametrize("case", CAMERAS, ids=IDS)
def test_projection_matches_world_to_camera_view(scene_mods, case):
    fit, sx, sy, rx, ry, pct, pax, pay, lens, sw, sh = case
    bpy_env.reset_scene()
    scene = bpy.context.scene
    data = bpy.data.cameras.new("Cam")
    data.sensor_fit, data.shift_x, data.shift_y, data.lens = fit, sx, sy, lens
    data.sensor_width, data.sensor_height = sw, sh
    cam = bpy.data.objects.new("Cam", data)
    scene.collection.objects.link(cam)
    cam.location = (3.0, -4.0, 2.0)
    cam.rotation_euler = Euler((1.2, 0.1, 0.7))
    cam.scale = (2.0, 1.0, 0.5)                     # scale must not leak into c2w
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = rx, ry, pct
    r.pixel_aspect_x, r.pixel_aspect_y = pax, pay
    bpy.context.view_layer.update()

    c2w, intr = scene_mods.cameras.camera_arrays([cam], scene)
    assert c2w.dtype == np.float32 and c2w.shape == (1, 4, 4) and intr.shape == (1, 6)
    width, height = rx * pct // 100, ry * pct // 100
    assert tuple(intr[0, 4:]) == (width, height)
    np.testing.assert_allclose(c2w[0, :3, :3].T @ c2w[0, :3, :3], np.eye(3), atol=1e-6)

    rng = np.random.default_rng(0)
    local = np.stack([rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), -rng.uniform(1.5, 8, 50)], axis=1)
    points = local @ c2w[0, :3, :3].T.astype(np.float64) + c2w[0, :3, 3]
    ref = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in points])
    assert np.all(ref[:, 2] > 0)
    ref_px = scene_mods.cameras.normalized_view_to_pixels(ref, width, height)
    ours = scene_mods.cameras.project_points(c2w[0].astype(np.float64), intr[0].astype(np.float64), points)
    assert np.abs(ours - ref_px).max() < 0.01


def test_gradient_image_round_trips_right_side_up(scene_mods):
    h, w = 24, 40
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([x / (w - 1), y / (h - 1), np.full((h, w), 0.25, np.float32)], axis=-1)
    image[0, 0] = (1.0, 0.0, 0.0)                  # a red pixel in the top-left corner
    img = scene_mods.images.image_from_array("gradient", image)
    assert tuple(img.size) == (w, h) and img.is_float and img.packed_file is not None
    # Blender keeps rows bottom first: the top-left pixel is the first pixel of the LAST row in Image.pixels
    flat = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(flat)
    assert tuple(np.round(flat.reshape(h, w, 4)[h - 1, 0, :3], 5)) == (1.0, 0.0, 0.0)
    back = scene_mods.images.array_from_image(img)
    assert back.shape == (h, w, 4)
    np.testing.assert_allclose(back[..., :3], image, atol=2e-6)
    assert np.all(back[..., 3] == 1.0)
    bpy.data.images.remove(img)


def test_mesh_arrays_are_evaluated_world_space_triangles(scene_mods):
    bpy_env.reset_scene()
    bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(1.0, 2.0, 3.0))
    obj = bpy.context.active_object
    obj.rotation_euler = (0.0, 0.0, np.pi / 2)
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    info = scene_mods.mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert info.vertices.shape == (507, 3) and info.faces.shape == (968, 3) and info.uvs.shape == (968, 3, 2)
    assert info.uv_name == "UVMap" and info.maps_to_original
    local = np.array([tuple(v.co) for v in obj.data.vertices])
    m = np.array(obj.matrix_world)
    np.testing.assert_allclose(info.vertices, local @ m[:3, :3].T + m[:3, 3], atol=1e-5)

    # a subdivision modifier is applied in what is sent, and breaks the loop mapping for write-back
    obj.modifiers.new("subsurf", "SUBSURF").levels = 1
    bpy.context.view_layer.update()
    sub = scene_mods.mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert sub.faces.shape[0] > 3000 and not sub.maps_to_original and sub.uvs is not None
    assert len(bpy.data.meshes) == 1                 # the temporary evaluated mesh was freed
