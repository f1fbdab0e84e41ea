"""Volume rendering against closed forms, and the occupancy grid on known analytic fields."""

import math

import torch

from engine.render.occupancy import OccupancyGrid
from engine.render.rays import camera_rays, ray_box
from engine.render.volume import render_rays
from engine.tasks.common.views import fixed_views


def _slab(sigma: float, half: float):
    """Constant density `sigma` for |z| < half, colour (0.2, 0.4, 0.6) everywhere."""

    def field(p):
        d = torch.where(p[:, 2].abs() < half, torch.full_like(p[:, 0], sigma), torch.zeros_like(p[:, 0]))
        return d, torch.tensor([0.2, 0.4, 0.6]).expand(len(p), 3)

    return field


def test_constant_slab_matches_closed_form_transmittance_and_opacity():
    sigma, half, radius, n = 3.0, 0.25, 1.0, 1024  # sample intervals of 2/1024 align with z = ±0.25
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.1, -0.2, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    out = render_rays(_slab(sigma, half), origins, dirs, radius, n)
    opacity = 1 - math.exp(-sigma * 2 * half)
    assert torch.allclose(out.opacity, torch.full((2,), opacity), atol=1e-3)
    assert torch.allclose(out.colour, torch.tensor([0.2, 0.4, 0.6]) * opacity, atol=1e-3)
    # expected depth: entry at distance 2.75, exponential attenuation inside the slab
    tau = sigma * 2 * half
    depth = 2.75 + (1 / sigma - (2 * half) * math.exp(-tau) / (1 - math.exp(-tau)))
    assert abs(float(out.depth[0]) / opacity - depth) < 5e-3
    # an oblique ray crosses the slab over 2·half / cos θ
    d = torch.nn.functional.normalize(torch.tensor([[0.3, 0.0, -1.0]]), dim=1)
    out = render_rays(_slab(sigma, half), torch.tensor([[-0.9, 0.0, 3.0]]), d, radius, 4096)
    expected = 1 - math.exp(-sigma * 2 * half / float(-d[0, 2]))
    assert abs(float(out.opacity[0]) - expected) < 1e-3


def test_rays_missing_the_bound_are_empty_and_cost_nothing():
    calls = []

    def field(p):
        calls.append(len(p))
        return torch.ones(len(p)), torch.ones(len(p), 3)

    out = render_rays(field, torch.tensor([[0.0, 5.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]]), 1.0, 64)
    assert float(out.opacity[0]) == 0.0 and calls == []
    near, far, hit = ray_box(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]]), 1.0)
    assert hit.all() and abs(float(near) - 2.0) < 1e-6 and abs(float(far) - 4.0) < 1e-6


def test_camera_rays_point_through_pixel_centres():
    cams = fixed_views(1, 33, elevation=0.0, distance=2.0, fov=60.0)
    o, d = camera_rays(cams)
    centre = d[0, 16, 16]
    assert torch.allclose(centre, -torch.nn.functional.normalize(o[0, 16, 16], dim=0), atol=1e-5)
    assert float(d[0, 0, 16, 2]) > float(centre[2]) > float(d[0, 32, 16, 2])  # top row looks up (Z up)


def test_occupancy_never_culls_a_cell_above_the_threshold():
    grid = OccupancyGrid(resolution=16, radius=1.0, threshold=0.5)
    cell = 2 / 16

    def ball(p):  # density 2 inside radius 0.5, 0 outside
        return torch.where(p.norm(dim=1) < 0.5, torch.full_like(p[:, 0], 2.0), torch.zeros_like(p[:, 0]))

    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        grid.update(ball, gen)
        centres = grid.cell_centres()
        # cells entirely inside the ball have density 2 > threshold everywhere: always occupied
        inside = centres.norm(dim=-1) + cell * math.sqrt(3) / 2 < 0.5
        assert grid.binary[inside].all()
    far = grid.cell_centres().norm(dim=-1) - cell * math.sqrt(3) / 2 > 0.5
    assert not grid.binary[far].any()  # empty space is culled
    # samples in culled cells are never given to the field
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9], [2.0, 0.0, 0.0]])
    assert grid.query(pts).tolist() == [True, False, False]


def test_occupancy_culling_reduces_field_calls_without_changing_the_image():
    grid = OccupancyGrid(resolution=32, radius=1.0, threshold=0.01)

    def ball(p):
        d = torch.where(p.norm(dim=1) < 0.4, torch.full_like(p[:, 0], 5.0), torch.zeros_like(p[:, 0]))
        return d, p.abs()

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # random points per cell find the ball's boundary cells
        grid.update(lambda p: ball(p)[0], gen)
    cams = fixed_views(2, 24)
    o, d = camera_rays(cams)
    full = render_rays(ball, o.reshape(-1, 3), d.reshape(-1, 3), 1.0, 128)
    culled = render_rays(ball, o.reshape(-1, 3), d.reshape(-1, 3), 1.0, 128, occupancy=grid)
    assert culled.kept < 0.5 * full.kept
    # only slivers of boundary cells that no random point has hit yet may be missed
    assert float((full.opacity - culled.opacity).abs().mean()) < 1e-3
    assert float((full.colour - culled.colour).abs().mean()) < 1e-3


def test_density_field_normals_point_out_of_the_blob():
    """With a zero MLP the density is softplus(Magic3D's radial blob): normals are radial, outwards, both for
    central differences and for forward differences that reuse the density volume rendering computed."""
    from engine.fields.density_field import DensityField, DensityFieldConfig

    field = DensityField(
        DensityFieldConfig(n_levels=4, log2_hashmap_size=12, per_level_scale=1.5, backend="torch")
    )
    torch.nn.init.zeros_(field.mlp.net[-1].weight)
    pts = (
        torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=1)
        * 0.4
    )
    radial = torch.nn.functional.normalize(pts, dim=1)
    for normals in (field.normal(pts), field.normal(pts, field.density(pts))):
        assert (normals * radial).sum(1).min() > 0.99
    density, albedo = field(pts)
    assert torch.allclose(density, torch.nn.functional.softplus(field.blob(pts)), atol=1e-5)
    assert torch.allclose(albedo, torch.full_like(albedo, 0.5))
