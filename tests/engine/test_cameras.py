"""Camera tests: Blender conventions, pinhole projection, consistency with the rasterizer, orbit sampling."""
from __future__ import annotations

import math

import pytest
import torch

from engine.errors import RequestError
from engine.render.cameras import Cameras, fixed_rig, look_at, orbit_cameras, orbit_from_angles
from engine.render.rasterize import interpolate, rasterize


def pinhole_pixel(eye, right, up, forward, fx, fy, cx, cy, point):
    """Independent pinhole model from an explicit camera basis: x right, y down, top-left pixel centre 0."""
    d = [p - e for p, e in zip(point, eye)]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))
    depth = dot(d, forward)
    return cx + fx * dot(d, right) / depth, cy - fy * dot(d, up) / depth


# (eye, right, up, forward) for hand-built poses looking at the origin (Blender front/right/top/back views).
POSES = [
    ((0.0, -4.0, 0.0), (1, 0, 0), (0, 0, 1), (0, 1, 0)),      # front view (azimuth 0)
    ((4.0, 0.0, 0.0), (0, 1, 0), (0, 0, 1), (-1, 0, 0)),      # right view (azimuth 90)
    ((0.0, 4.0, 0.0), (-1, 0, 0), (0, 0, 1), (0, -1, 0)),     # back view (azimuth 180)
    ((0.0, 0.0, 4.0), (1, 0, 0), (0, 1, 0), (0, 0, -1)),      # top view (elevation 90)
]


@pytest.mark.parametrize("pose", POSES)
def test_look_at_matches_blender_views(pose):
    eye, right, up, forward = pose
    c2w = look_at(torch.tensor(eye), torch.zeros(3))
    torch.testing.assert_close(c2w[:3, 0], torch.tensor(right, dtype=torch.float32))
    torch.testing.assert_close(c2w[:3, 1], torch.tensor(up, dtype=torch.float32))
    torch.testing.assert_close(c2w[:3, 2], -torch.tensor(forward, dtype=torch.float32))
    torch.testing.assert_close(c2w[:3, 3], torch.tensor(eye))


def test_project_matches_independent_pinhole():
    points = torch.tensor([[0.3, -0.2, 0.5], [-0.4, 0.1, -0.3], [0.0, 0.0, 0.0]], dtype=torch.float64)
    fx, fy, cx, cy = 50.0, 55.0, 19.0, 14.5
    c2w = torch.stack([look_at(torch.tensor(p[0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
                       for p in POSES])
    cams = Cameras(c2w, fx, fy, cx, cy, width=40, height=30)
    got = cams.project(points)
    for b, (eye, right, up, forward) in enumerate(POSES):
        for n, p in enumerate(points.tolist()):
            x, y = pinhole_pixel(eye, right, up, forward, fx, fy, cx, cy, p)
            assert got[b, n].tolist() == pytest.approx([x, y], abs=1e-9)
    # the origin sits on the principal point
    torch.testing.assert_close(got[:, 2], torch.tensor([[cx, cy]] * 4, dtype=torch.float64))


def test_projection_matrix_agrees_with_project():
    cams = orbit_cameras(5, width=37, height=29, generator=torch.Generator().manual_seed(1))
    cams = Cameras(cams.c2w.double(), cams.fx + 3, cams.fy, cams.cx + 1.7, cams.cy - 2.2, 37, 29)
    pts = torch.rand(20, 3, dtype=torch.float64) - 0.5
    clip = cams.clip_positions(pts)
    ndc = clip[..., :2] / clip[..., 3:]
    pix = torch.stack([(ndc[..., 0] + 1) * 37 / 2 - 0.5, (ndc[..., 1] + 1) * 29 / 2 - 0.5], -1)
    torch.testing.assert_close(pix, cams.project(pts))
    z = clip[..., 2] / clip[..., 3]
    assert ((z > -1) & (z < 1)).all()


def test_point_is_drawn_where_it_projects():
    """Interpolating world positions at covered pixels and projecting them back lands on those pixels, and a
    small triangle around a projected point covers that point's pixel (row 0 = top of the image)."""
    cams = orbit_cameras(4, width=35, height=31, generator=torch.Generator().manual_seed(0))
    verts = torch.tensor([[0.5, -0.5, 0.0], [0.0, 0.5, 0.5], [-0.5, -0.3, -0.4]])
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(cams.clip_positions(verts), tri, (31, 35), backend="torch")
    world = interpolate(verts, rast, tri)
    for b in range(4):
        hit = rast[b, ..., 3] > 0
        assert hit.sum() > 10
        ys, xs = hit.nonzero(as_tuple=True)
        proj = cams.subset(b).project(world[b][hit])[0]
        torch.testing.assert_close(proj, torch.stack([xs, ys], -1).float(), atol=1e-3, rtol=0)
    # a point above the target appears ABOVE (smaller row) the target's pixel in every orbit view
    up_pt = cams.project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.3]]))
    assert (up_pt[:, 1, 1] < up_pt[:, 0, 1]).all()


def test_orbit_samples_respect_ranges_and_are_z_up():
    gen = torch.Generator().manual_seed(3)
    cams = orbit_cameras(256, elevation_deg=(-20, 60), azimuth_deg=(-90, 120), distance=(1.2, 2.5),
                         fov_deg=(30, 50), width=48, height=32, target=(0.1, -0.2, 0.3), generator=gen)
    target = torch.tensor([0.1, -0.2, 0.3])
    off = cams.centers() - target
    dist = off.norm(dim=-1)
    elev = torch.rad2deg(torch.asin(off[:, 2] / dist))
    azim = torch.rad2deg(torch.atan2(off[:, 0], -off[:, 1]))
    fov = torch.rad2deg(2 * torch.atan(cams.height / 2 / cams.fy))
    eps = 1e-3
    assert dist.min() >= 1.2 - eps and dist.max() <= 2.5 + eps
    assert elev.min() >= -20 - eps and elev.max() <= 60 + eps
    assert azim.min() >= -90 - eps and azim.max() <= 120 + eps
    assert fov.min() >= 30 - eps and fov.max() <= 50 + eps
    assert elev.max() - elev.min() > 60 and azim.max() - azim.min() > 150     # ranges actually explored
    assert (cams.c2w[:, 2, 1] > 0).all()                                     # camera up has +Z component
    forward = -cams.c2w[:, :3, 2]
    torch.testing.assert_close(forward, -off / dist[:, None], atol=1e-5, rtol=0)  # looks at the target
    rot = cams.c2w[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(256, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(256), atol=1e-5)
    torch.testing.assert_close(cams.cx, torch.full((256,), 23.5))
    torch.testing.assert_close(cams.cy, torch.full((256,), 15.5))


def test_orbit_azimuth_zero_is_blender_front():
    cams = orbit_from_angles(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 90.0]), torch.tensor([2.0, 2.0]),
                             torch.tensor([40.0, 40.0]), 16, 16)
    torch.testing.assert_close(cams.centers(), torch.tensor([[0.0, -2.0, 0.0], [2.0, 0.0, 0.0]]), atol=1e-6,
                               rtol=0)


def test_uniform_azimuth_is_stratified():
    n = 8
    gen = torch.Generator().manual_seed(5)
    cams = orbit_cameras(n, azimuth_deg=(-180, 180), uniform_azimuth=True, generator=gen)
    off = cams.centers()
    azim = torch.rad2deg(torch.atan2(off[:, 0], -off[:, 1]))
    azim = torch.where(azim < -180 + 1e-4, azim + 360, azim)
    lo = -180 + torch.arange(n) * 360 / n
    assert ((azim >= lo - 1e-3) & (azim <= lo + 360 / n + 1e-3)).all()


def test_generator_determinism():
    a = orbit_cameras(6, generator=torch.Generator().manual_seed(11))
    b = orbit_cameras(6, generator=torch.Generator().manual_seed(11))
    c = orbit_cameras(6, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(a.c2w, b.c2w)
    torch.testing.assert_close(a.fy, b.fy)
    assert not torch.allclose(a.c2w, c.c2w)


def test_orbit_rejects_bad_ranges():
    with pytest.raises(RequestError, match="elevation_deg"):
        orbit_cameras(2, elevation_deg=(-100, 10))
    with pytest.raises(RequestError, match="distance"):
        orbit_cameras(2, distance=(0.0, 1.0))
    with pytest.raises(RequestError, match="fov_deg"):
        orbit_cameras(2, fov_deg=(50, 10))


def test_fixed_rig_rescaled_subset_concat():
    c2w = look_at(torch.tensor([[0.0, -3.0, 1.0], [2.0, 2.0, 0.5]]), torch.zeros(2, 3))
    intr = torch.tensor([[100.0, 100.0, 63.5, 47.5, 128, 96], [80.0, 90.0, 60.0, 50.0, 128, 96]])
    rig = fixed_rig(c2w, intr)
    assert (rig.width, rig.height, len(rig)) == (128, 96, 2)
    pts = torch.tensor([[0.2, 0.1, 0.3], [-0.3, 0.2, -0.1]])
    small = rig.rescaled(64, 48)
    # pixel edges scale by 1/2: centre x maps to (x + 0.5)/2 - 0.5
    torch.testing.assert_close(small.project(pts), (rig.project(pts) + 0.5) / 2 - 0.5)
    torch.testing.assert_close(torch.atan(small.height / 2 / small.fy), torch.atan(rig.height / 2 / rig.fy))
    one = rig.subset([1])
    torch.testing.assert_close(one.project(pts), rig.project(pts)[1:])
    both = Cameras.concat([rig.subset(0), one])
    torch.testing.assert_close(both.c2w, rig.c2w)
    with pytest.raises(RequestError, match="width/height"):
        fixed_rig(c2w, torch.tensor([[100.0, 100.0, 63.5, 47.5, 128, 96], [80.0, 90.0, 60.0, 50.0, 64, 48]]))
    with pytest.raises(RequestError, match="intrinsics"):
        fixed_rig(c2w, intr[:, :4])


def test_view_is_inverse_of_c2w():
    cams = orbit_cameras(3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(cams.view() @ cams.c2w, torch.eye(4).expand(3, 4, 4), atol=1e-5, rtol=0)


@pytest.mark.blender
def test_matches_blender_camera():
    """Blender itself: a camera tracked to the origin has our look_at matrix, and world_to_camera_view agrees
    with Cameras.project (Blender frame coords: (0, 0) = bottom-left corner of the image)."""
    bpy = pytest.importorskip("bpy")
    import mathutils
    from bpy_extras.object_utils import world_to_camera_view

    scene = bpy.context.scene
    width, height, angle_y = 40, 30, 0.8
    saved = (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage)
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("csd_test_cam")
    data.sensor_fit = "VERTICAL"
    data.angle_y = angle_y
    obj = bpy.data.objects.new("csd_test_cam", data)
    scene.collection.objects.link(obj)
    try:
        for eye in [(1.0, -3.0, 1.2), (-2.5, 0.5, 2.0), (0.3, 2.0, -1.0)]:
            obj.location = eye
            direction = mathutils.Vector((0, 0, 0)) - obj.location
            obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
            bpy.context.view_layer.update()
            blender_c2w = torch.tensor([list(r) for r in obj.matrix_world], dtype=torch.float64)
            c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
            torch.testing.assert_close(c2w, blender_c2w, atol=1e-5, rtol=0)
            fy = (height / 2) / math.tan(angle_y / 2)
            cams = Cameras(blender_c2w[None], fy, fy, (width - 1) / 2, (height - 1) / 2, width, height)
            for p in [(0.1, 0.2, 0.3), (-0.4, 0.0, 0.1)]:
                ndc = world_to_camera_view(scene, obj, mathutils.Vector(p))
                expected = [ndc.x * width - 0.5, (1 - ndc.y) * height - 0.5]
                assert cams.project(torch.tensor([p], dtype=torch.float64))[0, 0].tolist() == pytest.approx(
                    expected, abs=1e-4)
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = saved
