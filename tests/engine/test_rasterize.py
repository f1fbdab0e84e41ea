"""Rasterizer acceptance tests (torch backend on the CPU): hand-derived values, brute-force references, depth
order, clipping, watertightness, perspective-correct interpolation and its gradients, empty and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from raster_scenes import TRI, cube, perspective, random_scene

from engine.render import _torch_raster
from engine.render.rasterize import interpolate, rasterize


def pixel_ndc(i: float, j: float, height: int, width: int) -> tuple[float, float]:
    """NDC (x, y) of the centre of pixel row i, column j (nvdiffrast convention)."""
    return 2 * (j + 0.5) / width - 1, 2 * (i + 0.5) / height - 1


def reference_raster(pos: np.ndarray, tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """Brute-force float64 rasterizer written independently: screen-space barycentrics by a 3x3 solve,
    perspective correction by 1/w, nearest z/w wins, ties -> smallest id. pos (V, 4) -> (H, W, 4)."""
    out = np.zeros((height, width, 4))
    best = np.full((height, width), np.inf)
    for f, (a, b, c) in enumerate(tri):
        p = pos[[a, b, c]]
        if (p[:, 3] <= 0).any():
            continue
        ndc = p[:, :3] / p[:, 3:]
        m = np.stack([ndc[:, 0], ndc[:, 1], np.ones(3)])                      # columns = vertices
        if abs(np.linalg.det(m)) < 1e-12:
            continue
        jj, ii = np.meshgrid(np.arange(width), np.arange(height))
        xs, ys = 2 * (jj + 0.5) / width - 1, 2 * (ii + 0.5) / height - 1
        rhs = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        lam = np.linalg.solve(m, rhs).T.reshape(height, width, 3)               # screen-space barycentrics
        inside = (lam >= -1e-12).all(-1)
        z = lam @ ndc[:, 2]
        inside &= (z >= -1) & (z <= 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            pc = lam / p[:, 3]
            pc = pc / pc.sum(-1, keepdims=True)                                  # perspective-correct
        win = inside & (z < best)
        best[win] = z[win]
        out[win] = np.concatenate([pc[..., :2], z[..., None], np.full(z.shape + (1,), f + 1.0)], -1)[win]
    return out


def test_single_triangle_hand_derived():
    # w = 1: screen-space = perspective-correct barycentrics; pixel (4, 4) of 8x8 is at NDC (0.125, 0.125).
    pos = torch.tensor([[-0.8, -0.8, 0.0, 1.0], [0.8, -0.8, 0.0, 1.0], [0.0, 0.8, 0.5, 1.0]])
    rast = rasterize(pos, TRI, (8, 8), backend="torch")
    assert rast.shape == (1, 8, 8, 4)
    # y: -0.8 + 1.6 w3 = 0.125 -> w3 = 0.578125; x: 0.8 (v - u) = 0.125, u + v = 0.421875
    w3 = 0.925 / 1.6
    v = (1 - w3 + 0.125 / 0.8) / 2
    u = 1 - w3 - v
    torch.testing.assert_close(rast[0, 4, 4], torch.tensor([u, v, 0.5 * w3, 1.0]), atol=1e-6, rtol=0)
    # Row 0 is NDC y = -0.9375 (bottom in NDC): outside the triangle (its base is at -0.8), row 1 inside.
    assert rast[0, 0].abs().sum() == 0
    assert rast[0, 1, 4, 3] == 1
    # First vertex has (u, v) = (1, 0): a pixel right next to vertex 0 has u close to 1.
    near0 = rast[0, 1, 1]
    assert near0[3] == 1 and near0[0] > 0.75 and near0[1] < 0.1


def test_single_triangle_perspective_matches_reference_everywhere():
    pos = torch.tensor([[-1.2, -1.0, 0.1, 1.5], [2.0, -0.2, 0.9, 3.0], [0.1, 0.7, -0.2, 1.0]],
                       dtype=torch.float64)
    rast = rasterize(pos, TRI, (16, 20), backend="torch")[0].numpy()
    ref = reference_raster(pos.numpy(), TRI.numpy(), 16, 20)
    np.testing.assert_array_equal(rast[..., 3], ref[..., 3])
    np.testing.assert_allclose(rast, ref, atol=1e-9)
    assert (ref[..., 3] > 0).sum() > 40


def test_empty_pixels_are_all_zero():
    pos, tri = random_scene(6, seed=1)
    rast = rasterize(pos.float(), tri, (24, 24), backend="torch")
    empty = rast[..., 3] == 0
    assert empty.any() and (~empty).any()
    assert (rast[empty] == 0).all()


@pytest.mark.parametrize("front_first", [True, False])
def test_two_overlapping_triangles_depth_order(front_first):
    a = [[-0.9, -0.9, 0.2, 1.0], [0.5, -0.9, 0.2, 1.0], [-0.9, 0.5, 0.2, 1.0]]
    b = [[-0.5, -0.5, -0.3, 1.0], [0.9, -0.5, -0.3, 1.0], [-0.5, 0.9, -0.3, 1.0]]
    if not front_first:  # swap depths: now the first triangle (id 1) is in front
        a = [p[:2] + [-0.3, 1.0] for p in a]
        b = [p[:2] + [0.2, 1.0] for p in b]
    pos = torch.tensor(a + b)
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
    rast = rasterize(pos, tri, (10, 10), backend="torch")[0]
    # pixel (row 3, col 3) -> NDC (-0.3, -0.3): inside both.
    expected_id = 2.0 if front_first else 1.0
    assert rast[3, 3, 3] == expected_id
    assert rast[3, 3, 2] == pytest.approx(-0.3)
    # pixel (0, 0) -> (-0.9, -0.9)... centre (-0.9,-0.9) lies on a's corner; (1, 1) -> (-0.7, -0.7) only in a.
    assert rast[1, 1, 3] == 1.0
    # pixel (8, 2) -> (-0.5, 0.7): only b (a's hypotenuse x + y <= -0.4 excludes it).
    assert rast[8, 2, 3] == 2.0
    assert pixel_ndc(3, 3, 10, 10) == pytest.approx((-0.3, -0.3))
    if front_first:  # b's barycentrics at (-0.3, -0.3): b0 = 1 - (x+0.5)/1.4 - (y+0.5)/1.4
        assert rast[3, 3, 0] == pytest.approx(1 - 0.4 / 1.4, abs=1e-6)
        assert rast[3, 3, 1] == pytest.approx(0.2 / 1.4, abs=1e-6)


def test_cube_front_face_hand_derived_and_reference():
    v, faces = cube()
    near, far = 0.1, 10.0
    # Camera at (0, 0, 3) looking down -Z: the front face z = +0.5 is at distance 2.5.
    eye = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    cam = v - eye
    pos = torch.cat([cam, torch.ones(8, 1, dtype=torch.float64)], 1) @ perspective(60, near, far).T
    rast = rasterize(pos, faces, (31, 31), backend="torch")[0]
    centre = rast[15, 15]
    front = {int(i) + 1 for i in torch.nonzero((v[faces][:, :, 2] == 0.5).all(1)).flatten()}
    assert int(centre[3]) in front
    d = 2.5
    zw = (far + near) / (far - near) - 2 * far * near / ((far - near) * d)
    assert float(centre[2]) == pytest.approx(zw, abs=1e-9)
    ref = reference_raster(pos.numpy(), faces.numpy(), 31, 31)
    agree = rast[..., 3].numpy() == ref[..., 3]
    assert agree.mean() >= 0.99  # only pixels exactly on the front face's diagonal may break ties differently
    np.testing.assert_allclose(rast.numpy()[agree], ref[agree], atol=1e-9)
    assert set(np.unique(ref[..., 3])) - {0.0} <= front


def test_no_backface_culling():
    pos, tri = random_scene(8, seed=2)
    a = rasterize(pos, tri, (20, 20), backend="torch")[0]
    b = rasterize(pos, tri[:, [0, 2, 1]], (20, 20), backend="torch")[0]
    torch.testing.assert_close(a[..., 3], b[..., 3])
    hit = a[..., 3] > 0
    torch.testing.assert_close(a[..., 0][hit], b[..., 0][hit])
    torch.testing.assert_close(1 - a[..., 0][hit] - a[..., 1][hit], b[..., 1][hit])


def test_odd_non_square_matches_reference():
    pos, tri = random_scene(30, seed=3)
    rast = rasterize(pos, tri, (35, 31), backend="torch")[0].numpy()
    assert rast.shape == (35, 31, 4)
    ref = reference_raster(pos.numpy(), tri.numpy(), 35, 31)
    same = rast[..., 3] == ref[..., 3]
    assert same.mean() >= 0.995
    np.testing.assert_allclose(rast[same], ref[same], atol=1e-8)


def test_mesh_with_tiny_and_large_triangles_matches_reference():
    """A closed sphere mesh (sub-pixel to ~4 px triangles) plus one large triangle: exercises the one-pixel,
    bounding-box and row-span candidate paths against the brute-force reference."""
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(sphere.vertices, dtype=torch.float64) * 0.8
    cam = v - torch.tensor([0.1, -0.05, 3.0], dtype=torch.float64)
    big = torch.tensor([[-2.0, -1.5, -3.5], [1.5, -1.0, -3.2], [0.0, 2.0, -3.8]], dtype=torch.float64)
    verts = torch.cat([cam, big])
    faces = torch.cat([torch.tensor(sphere.faces), torch.tensor([[0, 1, 2]]) + len(v)])
    pos = torch.cat([verts, torch.ones(len(verts), 1, dtype=torch.float64)], 1) @ perspective(40, 0.1, 10.0).T
    rast = rasterize(pos, faces, (36, 44), backend="torch")[0].numpy()
    ref = reference_raster(pos.numpy(), faces.numpy(), 36, 44)
    same = rast[..., 3] == ref[..., 3]
    assert same.mean() >= 0.995
    np.testing.assert_allclose(rast[same], ref[same], atol=1e-8)
    assert (ref[..., 3] == len(faces)).sum() > 50                  # the large triangle shows around the sphere


def test_batch_of_cameras_equals_per_item():
    pos, tri = random_scene(20, seed=4)
    batch = torch.stack([pos, pos * torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64),
                         pos + torch.tensor([0.3, 0.1, 0.0, 0.0], dtype=torch.float64)])
    rast = rasterize(batch, tri, (17, 23), backend="torch")
    for b in range(3):
        torch.testing.assert_close(rast[b], rasterize(batch[b], tri, (17, 23), backend="torch")[0])
    assert not torch.equal(rast[0, ..., 3], rast[1, ..., 3])


def test_chunking_does_not_change_the_result():
    pos, tri = random_scene(40, seed=5)
    full = _torch_raster.rasterize_torch(pos[None], tri, 32, 32)
    chunked = _torch_raster.rasterize_torch(pos[None], tri, 32, 32, chunk_pairs=97)
    torch.testing.assert_close(full, chunked)


def test_beyond_far_and_wholly_behind_the_camera_are_dropped():
    tri = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    pos = torch.tensor([
        [-0.5, -0.5, -2.0, -1.0], [0.5, -0.5, -2.0, -1.0], [0.0, 0.5, -2.0, -1.0],  # behind the camera
        [-0.5, -0.5, 1.5, 1.0], [0.5, -0.5, 1.5, 1.0], [0.0, 0.5, 1.5, 1.0],        # z/w = 1.5 > 1: beyond far
        [-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0],        # visible
    ])
    rast = rasterize(pos, tri, (8, 8), backend="torch")
    ids = set(rast[..., 3].unique().tolist())
    assert ids == {0.0, 3.0}


def reference_raster_rays(pos: np.ndarray, tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """Brute-force float64 ray caster in clip space (no clipping, no division by w, so any sign of w): the pixel
    ray x = x_p·w, y = y_p·w meets the triangle plane at clip-space-linear weights λ (a 3x3 solve); a hit needs
    λ >= 0, w > 0 and z/w in [-1, 1]; nearest z/w wins, ties -> smallest id. pos (V, 4) -> (H, W, 4)."""
    out = np.zeros((height, width, 4))
    best = np.full((height, width), np.inf)
    jj, ii = np.meshgrid(np.arange(width), np.arange(height))
    xs, ys = 2 * (jj + 0.5) / width - 1, 2 * (ii + 0.5) / height - 1
    for f, (a, b, c) in enumerate(tri):
        p = pos[[a, b, c]]                                                    # rows = vertices (x, y, z, w)
        for i in range(height):
            for j in range(width):
                m = np.stack([p[:, 0] - xs[i, j] * p[:, 3], p[:, 1] - ys[i, j] * p[:, 3], np.ones(3)])
                if abs(np.linalg.det(m)) < 1e-12:
                    continue
                lam = np.linalg.solve(m, [0.0, 0.0, 1.0])
                x = lam @ p
                if (lam < -1e-12).any() or x[3] <= 0 or not -1 <= x[2] / x[3] <= 1:
                    continue
                z = x[2] / x[3]
                if z < best[i, j]:
                    best[i, j] = z
                    out[i, j] = [lam[0], lam[1], z, f + 1.0]
    return out


def test_triangles_crossing_the_camera_plane_are_clipped_like_nvdiffrast():
    """A floor and a wall that pass under and beside the camera (vertices behind it, w < 0) plus triangles in
    front: the torch rasterizer must agree with a ray caster that needs no clipping."""
    near, far = 0.1, 10.0
    world = torch.tensor([
        [-4.0, -1.0, 2.0], [4.0, -1.0, 2.0], [0.0, -1.0, -8.0],        # floor from behind the camera to far ahead
        [1.5, -2.0, 3.0], [1.5, 2.0, -6.0], [1.5, -2.0, -6.0],         # right wall, one vertex behind
        [-0.6, -0.5, -3.0], [0.4, -0.6, -2.5], [-0.1, 0.7, -3.5],      # an ordinary triangle in front
        [-3.0, 0.5, 1.0], [-0.5, 0.2, 1.5], [-0.2, 0.3, -0.6],         # two vertices behind, one in front
    ], dtype=torch.float64)
    pos = torch.cat([world, torch.ones(len(world), 1, dtype=torch.float64)], 1) @ perspective(70, near, far).T
    tri = torch.arange(12).view(4, 3)
    assert (pos[:, 3] < 0).sum() == 5
    rast = rasterize(pos, tri, (24, 32), backend="torch")[0].numpy()
    ref = reference_raster_rays(pos.numpy(), tri.numpy(), 24, 32)
    same = rast[..., 3] == ref[..., 3]
    assert same.mean() >= 0.99, same.mean()
    np.testing.assert_allclose(rast[same], ref[same], atol=1e-7)
    for f in (1, 2, 4):                                                   # the clipped ones are visible
        assert (ref[..., 3] == f).sum() > 10 and (rast[..., 3] == f).sum() > 10


def test_clipped_triangles_in_a_batch_and_their_gradients():
    near, far = 0.1, 10.0
    world = torch.tensor([[-4.0, -1.0, 2.0], [4.0, -1.0, 2.0], [0.0, -1.0, -8.0]], dtype=torch.float64)
    homo = torch.cat([world, torch.ones(3, 1, dtype=torch.float64)], 1)
    proj = perspective(70, near, far)
    lifted = homo + torch.tensor([0.0, -0.5, 0.0, 0.0], dtype=torch.float64)    # the floor lower, for item 1
    pos = torch.stack([homo @ proj.T, lifted @ proj.T]).requires_grad_(True)
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (12, 16), backend="torch")
    for b in range(2):
        ref = reference_raster_rays(pos[b].detach().numpy(), tri.numpy(), 12, 16)
        assert np.array_equal(rast[b, ..., 3].detach().numpy(), ref[..., 3])
        np.testing.assert_allclose(rast[b].detach().numpy(), ref, atol=1e-7)
    (rast[..., :2] ** 2).sum().backward()
    assert torch.isfinite(pos.grad).all() and pos.grad[:, 0].abs().sum() > 0   # the vertex behind gets gradient


def test_shared_edges_are_watertight():
    # A fan of triangles around an interior vertex covers its convex hull without holes.
    n = 7
    ang = torch.arange(n, dtype=torch.float64) * 2 * np.pi / n
    ring = torch.stack([0.9 * torch.cos(ang), 0.9 * torch.sin(ang)], 1)
    xy = torch.cat([torch.tensor([[0.013, -0.021]], dtype=torch.float64), ring])
    zw = torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(n + 1, 2)
    pos = torch.cat([xy, zw], 1)
    tri = torch.tensor([[0, 1 + k, 1 + (k + 1) % n] for k in range(n)])
    rast = rasterize(pos.float(), tri, (64, 64), backend="torch")[0]
    ref = reference_raster(pos.numpy(), tri.numpy(), 64, 64)
    covered_ref = ref[..., 3] > 0
    covered = rast[..., 3].numpy() > 0
    # every pixel the float64 reference covers strictly inside the polygon is covered (no cracks)
    assert (covered | ~covered_ref).all()


def test_interpolation_is_perspective_correct():
    # A world-space attribute (the position itself) interpolated at a pixel must project back to that pixel.
    pos_world = torch.tensor([[-0.6, -0.5, -2.0], [1.5, -0.3, -5.0], [0.1, 0.9, -1.5]], dtype=torch.float64)
    proj = perspective(70, 0.1, 20.0)
    clip = torch.cat([pos_world, torch.ones(3, 1, dtype=torch.float64)], 1) @ proj.T
    rast = rasterize(clip, TRI, (21, 27), backend="torch")
    world = interpolate(pos_world, rast, TRI)[0]
    hit = rast[0, ..., 3] > 0
    assert hit.sum() > 50
    reproj = torch.cat([world[hit], torch.ones(int(hit.sum()), 1, dtype=torch.float64)], 1) @ proj.T
    ndc = reproj[:, :2] / reproj[:, 3:]
    ii, jj = torch.nonzero(hit, as_tuple=True)
    jj, ii = jj.double(), ii.double()
    expected = torch.stack([2 * (jj + 0.5) / 27 - 1, 2 * (ii + 0.5) / 21 - 1], 1)
    torch.testing.assert_close(ndc, expected, atol=1e-10, rtol=0)
    # z/w of the rasterizer is the projected depth of the interpolated point
    torch.testing.assert_close(rast[0, ..., 2][hit], reproj[:, 2] / reproj[:, 3], atol=1e-10, rtol=0)
    assert (interpolate(pos_world, rast, TRI)[0][~hit] == 0).all()


def test_interpolate_batched_attributes():
    pos, tri = random_scene(5, seed=6)
    batch = torch.stack([pos, pos])
    rast = rasterize(batch, tri, (12, 12), backend="torch")
    attr = torch.randn(2, pos.shape[0], 3, dtype=torch.float64)
    out = interpolate(attr, rast, tri)
    torch.testing.assert_close(out[1], interpolate(attr[1], rast[1:], tri)[0])
    torch.testing.assert_close(out[0], interpolate(attr[0], rast[:1], tri)[0])


def test_gradcheck_attributes_and_positions():
    pos0 = torch.tensor([[-0.8, -0.7, 0.1, 1.2], [0.9, -0.6, 0.4, 2.0], [0.0, 0.8, -0.3, 1.0]],
                        dtype=torch.float64)
    attr0 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    rast = rasterize(pos0, TRI, (9, 9), backend="torch")[0]
    # pixels whose centre is far from every edge (all perspective-correct barycentrics >= 0.15)
    bary = torch.stack([rast[..., 0], rast[..., 1], 1 - rast[..., 0] - rast[..., 1]], -1)
    interior = (rast[..., 3] > 0) & (bary.min(-1).values > 0.15)
    assert interior.sum() >= 3

    def fn(pos, attr):
        r = rasterize(pos, TRI, (9, 9), backend="torch")
        return interpolate(attr, r, TRI)[0][interior]

    pos = pos0.clone().requires_grad_(True)
    attr = attr0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (pos, attr), eps=1e-6, atol=1e-6)
    # the positions really receive a gradient through (u, v); z/w carries none (as nvdiffrast)
    out = fn(pos, attr).sum()
    (g,) = torch.autograd.grad(out, pos)
    assert g[:, :2].abs().sum() > 0
    r = rasterize(pos, TRI, (9, 9), backend="torch")
    (gz,) = torch.autograd.grad(r[..., 2].sum(), pos, allow_unused=True)
    assert gz is None or gz.abs().sum() == 0


def test_no_faces_and_offscreen_give_empty_images():
    pos = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.5, 0.0, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    assert (rasterize(pos, torch.zeros(0, 3, dtype=torch.int64), (5, 7), backend="torch") == 0).all()
    assert (rasterize(pos + torch.tensor([3.0, 0.0, 0.0, 0.0]), TRI, (5, 7), backend="torch") == 0).all()
    assert (interpolate(torch.ones(3, 2), torch.zeros(2, 5, 7, 4), TRI) == 0).all()


def test_bad_inputs_raise():
    pos = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="tri"):
        rasterize(pos, torch.tensor([[0, 1, 3]]), (4, 4))
    with pytest.raises(ValueError, match="pos"):
        rasterize(torch.zeros(3, 3), TRI, (4, 4))
    with pytest.raises(ValueError, match="backend"):
        rasterize(pos, TRI, (4, 4), backend="opengl")
    with pytest.raises(ValueError, match="resolution"):
        rasterize(pos, TRI, (0, 4))
