"""Texture sampling and analytic antialiasing (torch backend on the CPU): addressing and boundary modes, edge
coverage, silhouette-only blending, gradients, and the edge-neighbour topology and its cache."""
from __future__ import annotations

import pytest
import torch
from raster_scenes import TRI, cube_view, quad

from engine.render.rasterize import antialias, interpolate, rasterize, texture


def test_texture_addressing_and_boundaries():
    tex = torch.arange(6, dtype=torch.float32).view(1, 2, 3, 1)  # row 0 = [0, 1, 2], row 1 = [3, 4, 5]
    uv = torch.tensor([[[[0.5 / 3, 0.25], [2.5 / 3, 0.75], [1.5 / 3, 0.5]]]])
    out = texture(tex, uv, filter_mode="linear")
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([0.0, 5.0, 2.5]))
    near = texture(tex, uv, filter_mode="nearest")
    torch.testing.assert_close(near[0, 0, :2, 0], torch.tensor([0.0, 5.0]))
    outside = torch.tensor([[[[-0.5, 0.25], [1.0 + 0.5 / 3, 0.25], [0.0, 0.25]]]])
    clamp = texture(tex, outside, boundary_mode="clamp")
    torch.testing.assert_close(clamp[0, 0, :2, 0], torch.tensor([0.0, 2.0]))
    zero = texture(tex, outside, boundary_mode="zero")
    assert zero[0, 0, 0, 0] == 0
    wrap = texture(tex, outside, boundary_mode="wrap")
    torch.testing.assert_close(wrap[0, 0, 1, 0], torch.tensor(0.0))           # u = 1 + 1/6 -> texel (0, 0)
    torch.testing.assert_close(wrap[0, 0, 2, 0], torch.tensor(1.0))           # seam: mean of columns 2 and 0
    with pytest.raises(ValueError, match="filter_mode"):
        texture(tex, uv, filter_mode="linear-mipmap-linear")


def test_texture_is_differentiable():
    tex = torch.rand(1, 4, 4, 3, requires_grad=True)
    uv = torch.rand(1, 5, 5, 2, requires_grad=True)
    texture(tex, uv).sum().backward()
    assert tex.grad.abs().sum() > 0 and uv.grad.abs().sum() > 0


@pytest.mark.parametrize("edge_px, expect4, expect5", [(4.3, 0.8, 0.0), (4.8, 1.0, 0.3)])
def test_antialias_blends_by_edge_coverage(edge_px, expect4, expect5):
    # 10 px wide: screen x = (ndc + 1) * 5 - 0.5, so the right edge sits at column coordinate edge_px.
    pos, tri = quad((edge_px + 0.5) / 5 - 1)
    rast = rasterize(pos, tri, (6, 10), backend="torch")
    mask = (rast[..., 3:] > 0).double()
    out = antialias(mask, rast, pos, tri, backend="torch")[0, ..., 0]
    torch.testing.assert_close(out[:, 4], torch.full((6,), expect4, dtype=torch.float64))
    torch.testing.assert_close(out[:, 5], torch.full((6,), expect5, dtype=torch.float64))
    # interior pixels, including those across the shared diagonal, are untouched
    torch.testing.assert_close(out[:, :4], mask[0, :, :4, 0])
    assert (out[:, 6:] == 0).all()


def test_antialias_coverage_approximates_area_and_interior_is_unchanged():
    pos = torch.tensor([[-0.71, -0.63, 0.1, 1.0], [0.77, -0.21, 0.1, 1.0], [-0.12, 0.83, 0.1, 1.0]],
                       dtype=torch.float64)
    size = 40
    rast = rasterize(pos, TRI, (size, size), backend="torch")
    mask = (rast[..., 3:] > 0).double()
    soft = antialias(mask, rast, pos, TRI, backend="torch")
    sx = (pos[:, 0] + 1) * size / 2
    sy = (pos[:, 1] + 1) * size / 2
    area = 0.5 * abs(float((sx[1] - sx[0]) * (sy[2] - sy[0]) - (sx[2] - sx[0]) * (sy[1] - sy[0])))
    assert abs(float(soft.sum()) - area) < 0.5 * abs(float(mask.sum()) - area) + 1.0
    assert abs(float(soft.sum()) - area) / area < 0.01
    changed = (soft != mask)[0, ..., 0]
    ids = rast[0, ..., 3]
    border = torch.zeros_like(changed)
    border[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    border[:, 1:] |= ids[:, :-1] != ids[:, 1:]
    border[:-1] |= ids[:-1] != ids[1:]
    border[1:] |= ids[:-1] != ids[1:]
    assert changed.any() and not (changed & ~border).any()


def test_antialias_cube_only_touches_the_outline():
    v, faces, pos = cube_view()
    rast = rasterize(pos, faces, (32, 32), backend="torch")
    colour = interpolate(v + 0.5, rast, faces)   # smooth inside each face, different across face edges
    out = antialias(colour, rast, pos, faces, backend="torch")
    changed = (out != colour).any(-1)[0]
    empty = rast[0, ..., 3] == 0
    near_empty = torch.zeros_like(empty)
    near_empty[:, :-1] |= empty[:, 1:]
    near_empty[:, 1:] |= empty[:, :-1]
    near_empty[:-1] |= empty[1:]
    near_empty[1:] |= empty[:-1]
    assert changed.any()
    assert not (changed & ~near_empty).any()   # edges between visible cube faces are not silhouettes


def test_antialias_gradcheck_positions_and_colour():
    pos0, tri = quad((4.37 + 0.5) / 5 - 1)
    pos0 = pos0 + torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.013, 0.0, 0.0, 0.0], [-0.02, 0.0, 0.0, 0.0],
                                [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    colour0 = torch.rand(1, 6, 10, 2, dtype=torch.float64)

    def fn(pos, colour):
        rast = rasterize(pos, tri, (6, 10), backend="torch")
        return antialias(colour, rast, pos, tri, backend="torch")

    pos = pos0.clone().requires_grad_(True)
    colour = colour0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (pos, colour), eps=1e-6, atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(lambda p: fn(p, colour0), (pos,), eps=1e-6, atol=1e-6)
    (g,) = torch.autograd.grad(fn(pos, colour).sum(), pos)
    assert g[1:3, 0].abs().sum() > 0   # the silhouette edge's vertices receive an x gradient


def test_edge_neighbors():
    from engine.render._antialias import edge_neighbors

    _, tri = quad(0.0)
    nb = edge_neighbors(tri)
    # triangle 0 = (0, 1, 2): edge opposite vertex 1 is (2, 0), shared with triangle 1; others are boundary
    assert nb.tolist() == [[-1, 1, -1], [-1, -1, 0]]
    fan = torch.tensor([[0, 1, 2], [0, 2, 1], [0, 1, 2]])
    assert (edge_neighbors(fan) == -2).all()


def test_topology_cache_follows_tensor_identity_and_version():
    from engine.render._antialias import cached_edge_neighbors

    _, tri = quad(0.0)
    first = cached_edge_neighbors(tri)
    assert cached_edge_neighbors(tri) is first
    tri[0] = torch.tensor([0, 1, 3])          # in-place edit bumps the version: recomputed
    again = cached_edge_neighbors(tri)
    assert again is not first
    assert again.tolist() == [[-1, 1, -1], [-1, 0, -1]]   # (0, 1, 3) shares edge (3, 0) with (0, 2, 3)
