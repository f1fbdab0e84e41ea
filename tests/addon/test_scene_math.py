"""csd_blender.scene pure maths (no bpy): intrinsics and projection (cameras), colour and row order (images), UV
scatter (mesh)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from csd_blender.scene import cameras, images, mesh


def test_module_imports_without_bpy():
    code = ("import sys, csd_blender.scene.cameras, csd_blender.scene.images, csd_blender.scene.mesh, "
            "csd_blender.scene.uv_check; assert 'bpy' not in sys.modules, 'the scene maths imported bpy'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_render_size_truncates_like_blender():
    assert cameras.render_size(1920, 1080, 50) == (960, 540)
    assert cameras.render_size(1001, 333, 33) == (330, 109)


def _edge_u(intr, x_over_d):
    """Pixel column of a ray with camera-space slope x/d."""
    return intr[0] * x_over_d + intr[2]


def test_horizontal_fit_maps_sensor_width_to_image_width():
    intr = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "HORIZONTAL", 0, 0, 640, 480)
    fx, fy, cx, cy, w, h = intr
    assert (w, h) == (640, 480)
    assert cx == pytest.approx(319.5) and cy == pytest.approx(239.5)
    assert fx == pytest.approx(50 / 36 * 640) and fy == pytest.approx(fx)
    # the ray through the sensor's right edge lands on the right edge of the last pixel
    assert _edge_u(intr, 18.0 / 50.0) == pytest.approx(639.5)
    assert _edge_u(intr, -18.0 / 50.0) == pytest.approx(-0.5)


def test_auto_fit_uses_sensor_width_on_the_larger_side():
    portrait = cameras.pixel_intrinsics(35.0, 36.0, 24.0, "AUTO", 0, 0, 300, 600)
    assert portrait[1] == pytest.approx(35 / 36 * 600)          # height is the larger side
    landscape = cameras.pixel_intrinsics(35.0, 36.0, 24.0, "AUTO", 0, 0, 600, 300)
    assert landscape[0] == pytest.approx(35 / 36 * 600)


def test_vertical_fit_uses_sensor_height():
    intr = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "VERTICAL", 0, 0, 640, 480)
    assert intr[1] == pytest.approx(50 / 24 * 480) and intr[0] == pytest.approx(intr[1])


def test_shift_moves_the_principal_point_against_the_shift():
    base = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "HORIZONTAL", 0, 0, 640, 480)
    shifted = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "HORIZONTAL", 0.1, 0.2, 640, 480)
    assert shifted[2] == pytest.approx(base[2] - 64.0)   # shift right: content moves left
    assert shifted[3] == pytest.approx(base[3] + 128.0)  # shift up: content moves down (y is down)


def test_pixel_aspect_scales_fy():
    intr = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "HORIZONTAL", 0, 0, 640, 480, 1.0, 2.0)
    assert intr[1] == pytest.approx(intr[0] / 2.0)


def test_bad_camera_parameters_are_named():
    with pytest.raises(ValueError, match="sensor_fit"):
        cameras.pixel_intrinsics(50, 36, 24, "FILL", 0, 0, 10, 10)
    with pytest.raises(ValueError, match="lens"):
        cameras.pixel_intrinsics(0, 36, 24, "AUTO", 0, 0, 10, 10)


def test_projection_looks_down_minus_z_with_y_up():
    c2w = np.eye(4)
    c2w[:3, 3] = (0, 0, 5)
    intr = cameras.pixel_intrinsics(50.0, 36.0, 24.0, "AUTO", 0, 0, 101, 51)
    uv = cameras.project_points(c2w, intr, np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]))
    assert uv[0] == pytest.approx([50.0, 25.0])      # on the axis: the image centre
    assert uv[1, 0] > 50 and uv[1, 1] == pytest.approx(25.0)   # +X: right
    assert uv[2, 1] < 25 and uv[2, 0] == pytest.approx(50.0)   # +Y (up): smaller row


def test_remove_scale_keeps_rotation_and_translation():
    angle = math.radians(30)
    rot = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rot @ np.diag([2.0, 3.0, 0.5])
    m[:3, 3] = (1, 2, 3)
    out = cameras.remove_scale(m)
    np.testing.assert_allclose(out[:3, :3], rot, atol=1e-12)
    np.testing.assert_allclose(out[:3, 3], (1, 2, 3))
    with pytest.raises(ValueError, match="zero scale"):
        cameras.remove_scale(np.diag([0.0, 1, 1, 1]))


def test_normalized_view_to_pixels_corners():
    px = cameras.normalized_view_to_pixels(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]), 10, 4)
    np.testing.assert_allclose(px, [[-0.5, -0.5], [9.5, 3.5], [4.5, 1.5]])


def test_srgb_round_trip_and_known_values():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(images.linear_to_srgb(images.srgb_to_linear(x)), x, atol=2e-6)
    assert images.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-5)


def test_blender_pixels_flip_rows_and_fill_alpha():
    img = np.zeros((2, 3, 3), dtype=np.float32)
    img[0] = 1.0                                  # top row white
    flat = images.to_blender_pixels(img).reshape(2, 3, 4)
    assert np.all(flat[1, :, :3] == 1.0) and np.all(flat[0, :, :3] == 0.0)   # Blender stores bottom row first
    assert np.all(flat[..., 3] == 1.0)
    back = images.from_blender_pixels(flat.ravel(), 3, 2)
    np.testing.assert_allclose(back[..., :3], img, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        images.to_blender_pixels(np.zeros((2, 3, 2), np.float32))


def test_corner_uv_gather_and_scatter():
    loop_uvs = np.arange(12, dtype=np.float32).reshape(6, 2)
    tri_loops = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 1]])
    corners = mesh.corner_uvs(loop_uvs, tri_loops)
    assert corners.shape == (3, 3, 2) and corners.dtype == np.float32
    back, conflicts = mesh.loop_uvs_from_corners(corners, tri_loops, 6)
    np.testing.assert_array_equal(back, loop_uvs)
    assert conflicts == 0
    corners[1, 0] += 0.5                          # loop 0 now disagrees between triangles 0 and 1
    _, conflicts = mesh.loop_uvs_from_corners(corners, tri_loops, 6)
    assert conflicts == 1
    with pytest.raises(ValueError, match="triangles"):
        mesh.loop_uvs_from_corners(corners[:2], tri_loops, 6)


def test_degenerate_triangles_cover_the_engines_rule():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [1e-9, 0, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 0, 2], [0, 4, 2]])
    # collinear (zero area) and repeated-index triangles go; a thin but real triangle stays
    np.testing.assert_array_equal(mesh.degenerate_triangles(v, faces), [False, True, True, False])
    assert mesh.degenerate_triangles(v, faces[:0]).shape == (0,)
