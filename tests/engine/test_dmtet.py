"""The generated tetrahedral grid, differentiable marching tetrahedra and the normal-consistency loss."""

import numpy as np
import torch

from engine.fields.dmtet import (
    DMTetConfig,
    DMTetGeometry,
    marching_tetrahedra,
    normal_consistency,
    tet_grid,
    tet_volumes,
)
from engine.mesh import Mesh
from engine.mesh.cleanup import non_manifold_edges, signed_volume


def test_grid_tetrahedra_have_positive_volume_and_fill_the_cube():
    for res, radius in ((1, 1.0), (5, 0.7)):
        verts, tets = tet_grid(res, radius)
        vol = tet_volumes(verts.double(), tets)
        assert (vol > 0).all()
        assert torch.allclose(vol, torch.full_like(vol, (2 * radius / res) ** 3 / 6))
        assert abs(float(vol.sum()) - (2 * radius) ** 3) < 1e-5  # float32 grid positions
        # conforming: every interior triangle is shared by exactly two tetrahedra, boundary ones by one
        tri = torch.sort(tets[:, [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]].reshape(-1, 3), dim=1).values
        _, counts = torch.unique(tri, dim=0, return_counts=True)
        assert set(counts.tolist()) <= {1, 2}
        assert int((counts == 1).sum()) == 6 * 2 * res * res  # two triangles per boundary square


def test_sphere_sdf_gives_a_closed_outward_mesh_within_half_a_cell():
    res, radius, r = 24, 1.0, 0.6
    verts, tets = tet_grid(res, radius)
    mv, faces = marching_tetrahedra(verts, verts.norm(dim=1) - r, tets)
    mesh = Mesh(mv.numpy(), faces.numpy())
    assert non_manifold_edges(mesh) == 0
    assert (mv.norm(dim=1) - r).abs().max() < 0.5 * 2 * radius / res
    assert abs(signed_volume(mesh) - 4 / 3 * np.pi * r**3) < 0.03  # outward: positive volume
    # one connected piece (Euler characteristic of a sphere)
    edges = np.unique(np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    assert len(mesh.vertices) - len(edges) + len(mesh.faces) == 2


def test_marching_tetrahedra_is_empty_without_a_sign_change():
    verts, tets = tet_grid(4)
    mv, faces = marching_tetrahedra(verts, torch.ones(len(verts)), tets)
    assert mv.shape == (0, 3) and faces.shape == (0, 3)


def test_gradients_reach_sdf_values_and_deformations():
    verts, tets = tet_grid(2, 1.0)
    verts = verts.double()
    sdf0 = (verts.norm(dim=1) - 0.8).double()
    # perturb to avoid exact zeros; the topology is fixed for small changes, so gradcheck applies
    sdf0 = sdf0 + 0.01 * torch.sin(torch.arange(len(sdf0), dtype=torch.float64))

    def surface(v, s):
        mv, _ = marching_tetrahedra(v, s, tets)
        return mv

    v = verts.clone().requires_grad_(True)
    s = sdf0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(surface, (v, s), eps=1e-6, atol=1e-5)
    geom = DMTetGeometry(DMTetConfig(resolution=3, radius=1.0), sdf=torch.tensor([0.0]).expand(64) + 0.3)
    with torch.no_grad():
        geom.sdf.copy_(geom.grid_vertices.norm(dim=1) - 0.7)
    mv, faces = geom()
    (mv**2).sum().backward()
    assert geom.sdf.grad.abs().sum() > 0 and geom.deformation.grad.abs().sum() > 0


def test_normal_consistency_is_zero_on_a_plane_and_positive_on_a_fold():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], requires_grad=True)
    flat = torch.tensor([[0, 1, 2], [1, 3, 2]])
    assert float(normal_consistency(v, flat).detach()) < 1e-7
    folded = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1.0]], requires_grad=True)
    loss = normal_consistency(folded, flat)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert folded.grad[3, 2] > 0  # lowering the raised corner flattens the fold
