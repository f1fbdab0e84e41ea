"""DMTet: a deformable tetrahedral grid made in code, differentiable marching tetrahedra, normal consistency.

The grid is a cube of `resolution`^3 cells over [-radius, radius]^3, each cell split into 6 tetrahedra around
its main diagonal (Kuhn/Freudenthal subdivision: neighbouring cells' faces match, every tetrahedron has volume
cell³/6 and positive orientation, and together they fill the cube). Marching tetrahedra puts one vertex on
every edge whose SDF changes sign (sdf < 0 inside), interpolated linearly — differentiable w.r.t. vertex
positions and SDF values — and orients every triangle outwards (from the tetrahedron's inside corners to its
outside corners).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _edge_id(a: int, b: int) -> int:
    return TET_EDGES.index((min(a, b), max(a, b)))


def _case_table() -> tuple[Tensor, Tensor]:
    """(16, 6) local edge ids of the triangles for each inside/outside code (bit i = corner i outside), and
    (16,)
    triangle counts. One lone corner gives one triangle; a 2–2 split gives a quad as two triangles."""
    table = torch.full((16, 6), -1, dtype=torch.long)
    count = torch.zeros(16, dtype=torch.long)
    for code in range(16):
        out = [i for i in range(4) if code >> i & 1]
        ins = [i for i in range(4) if not code >> i & 1]
        if len(out) in (1, 3):
            lone = out[0] if len(out) == 1 else ins[0]
            others = [i for i in range(4) if i != lone]
            table[code, :3] = torch.tensor([_edge_id(lone, o) for o in others])
            count[code] = 1
        elif len(out) == 2:
            (a, b), (c, d) = ins, out
            ring = [_edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)]  # cyclic around the quad
            table[code] = torch.tensor([ring[0], ring[1], ring[2], ring[0], ring[2], ring[3]])
            count[code] = 2
    return table, count


CASE_TABLE, CASE_TRIANGLES = _case_table()


def tet_grid(resolution: int, radius: float = 1.0) -> tuple[Tensor, Tensor]:
    """A regular tetrahedral grid over [-radius, radius]^3.

    Args:
        resolution: cells per axis.
        radius: half the cube's edge.
    Returns:
        vertices ((R+1)^3, 3) float32 and tets (6·R^3, 4) long, every tetrahedron positively oriented
        (det[v1−v0, v2−v0, v3−v0] > 0).
    """
    n = resolution + 1
    axis = torch.linspace(-radius, radius, n)
    verts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    i, j, k = torch.meshgrid(*(torch.arange(resolution),) * 3, indexing="ij")
    base = (i * n * n + j * n + k).reshape(-1)
    step = (n * n, n, 1)  # index offset of +x, +y, +z
    tets = []
    for perm in itertools.permutations(range(3)):
        corners = [0]
        for axis_id in perm:
            corners.append(corners[-1] + step[axis_id])
        tet = torch.stack([base + c for c in corners], dim=1)
        parity = sum(1 for a, b in itertools.combinations(perm, 2) if a > b) % 2
        if parity:  # odd permutation: negative volume, swap two corners
            tet = tet[:, [0, 1, 3, 2]]
        tets.append(tet)
    return verts, torch.cat(tets)


def tet_volumes(vertices: Tensor, tets: Tensor) -> Tensor:
    """(T,) signed volumes det[v1−v0, v2−v0, v3−v0] / 6."""
    v = vertices[tets]
    return (
        torch.linalg.det(torch.stack([v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], v[:, 3] - v[:, 0]], dim=1)) / 6.0
    )


def marching_tetrahedra(vertices: Tensor, sdf: Tensor, tets: Tensor) -> tuple[Tensor, Tensor]:
    """Extract the zero level set of `sdf` (negative inside) on a tetrahedral grid.

    Args:
        vertices: (V, 3) grid vertex positions (may carry gradients: deformations).
        sdf: (V,) signed distance values (may carry gradients).
        tets: (T, 4) long.
    Returns:
        mesh vertices (M, 3) (one per sign-changing grid edge, shared by all its tetrahedra) and faces (F, 3)
        long, oriented outwards. Empty tensors when the level set misses the grid.
    """
    dev = vertices.device
    with torch.no_grad():
        outside = sdf > 0
        occ = outside[tets]  # (T, 4)
        n_out = occ.sum(-1)
        valid = (n_out > 0) & (n_out < 4)
        vt = tets[valid]
        if vt.shape[0] == 0:
            return vertices.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long, device=dev)
        edges = vt[:, torch.tensor(TET_EDGES, device=dev)].reshape(-1, 2)
        edges = torch.sort(edges, dim=1).values
        unique, inverse = torch.unique(edges, dim=0, return_inverse=True)
        crossing = outside[unique[:, 0]] != outside[unique[:, 1]]
        mapping = torch.full((unique.shape[0],), -1, dtype=torch.long, device=dev)
        mapping[crossing] = torch.arange(int(crossing.sum()), device=dev)
        local = mapping[inverse].reshape(-1, 6)  # (Tv, 6) mesh vertex ids
        ends = unique[crossing]
        code = (occ[valid].long() * (2 ** torch.arange(4, device=dev))).sum(-1)
        counts = CASE_TRIANGLES.to(dev)[code]
        table = CASE_TABLE.to(dev)[code]
    sa, sb = sdf[ends[:, 0]][:, None], sdf[ends[:, 1]][:, None]
    w = sa / (sa - sb)
    mesh_v = vertices[ends[:, 0]] + w * (vertices[ends[:, 1]] - vertices[ends[:, 0]])
    with torch.no_grad():
        faces, owner = [], []
        for k in (1, 2):
            sel = counts == k
            ids = torch.gather(local[sel], 1, table[sel][:, : 3 * k]).reshape(-1, 3)
            faces.append(ids)
            owner.append(torch.nonzero(sel)[:, 0].repeat_interleave(k))
        faces, owner = torch.cat(faces), torch.cat(owner)
        # orient outwards: normal along (centroid of outside corners − centroid of inside corners)
        corner_pos = vertices.detach()[vt[owner]]  # (F, 4, 3)
        o = occ[valid][owner].float()[..., None]
        direction = (corner_pos * o).sum(1) / o.sum(1) - (corner_pos * (1 - o)).sum(1) / (1 - o).sum(1)
        p = mesh_v.detach()[faces]
        normal = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
        flip = (normal * direction).sum(-1) < 0
        faces[flip] = faces[flip][:, [0, 2, 1]]
    return mesh_v, faces


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(F, 3) unit face normals (right-handed winding)."""
    p = vertices[faces]
    return F.normalize(torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1), dim=1, eps=1e-12)


def normal_consistency(vertices: Tensor, faces: Tensor) -> Tensor:
    """Mean of 1 − cos(angle) between the normals of the two faces of every interior edge (threestudio's
    `Mesh.normal_consistency`, pytorch3d's formula); 0 for an empty mesh."""
    if faces.shape[0] == 0:
        return vertices.sum() * 0.0
    n = face_normals(vertices, faces)
    edges = torch.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), dim=1).values
    face_of = torch.arange(faces.shape[0], device=faces.device).repeat_interleave(3)
    _, inverse, counts = torch.unique(edges, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    inv_sorted = inverse[order]
    pair = (inv_sorted[1:] == inv_sorted[:-1]) & (counts[inv_sorted[1:]] == 2)
    fa, fb = face_of[order[:-1][pair]], face_of[order[1:][pair]]
    if fa.numel() == 0:
        return vertices.sum() * 0.0
    return (1.0 - (n[fa] * n[fb]).sum(-1)).mean()


@dataclass
class DMTetConfig:
    """Grid size and deformation range.

    Args:
        resolution: cells per axis (official: a 256 Quartet grid; CPU runs use 24-64).
        radius: half the bound's edge.
        max_deform: largest vertex offset, in cells (deformation = max_deform · cell · tanh(param)).
    """

    resolution: int = 64
    radius: float = 1.0
    max_deform: float = 0.5


class DMTetGeometry(nn.Module):
    """Learnable SDF values and deformations on a `tet_grid`; `forward()` extracts the current mesh.

    Args:
        config: DMTetConfig.
        sdf: optional (V,) initial SDF (negative inside).
    """

    def __init__(self, config: DMTetConfig | None = None, sdf: Tensor | None = None):
        super().__init__()
        self.config = c = config or DMTetConfig()
        verts, tets = tet_grid(c.resolution, c.radius)
        self.register_buffer("grid_vertices", verts)
        self.register_buffer("tets", tets)
        self.sdf = nn.Parameter(sdf.clone().float() if sdf is not None else torch.zeros(verts.shape[0]))
        self.deformation = nn.Parameter(torch.zeros(verts.shape[0], 3))

    @property
    def cell(self) -> float:
        """Edge length of one cell."""
        return 2 * self.config.radius / self.config.resolution

    def vertices(self) -> Tensor:
        """(V, 3) deformed grid vertices."""
        return self.grid_vertices + self.config.max_deform * self.cell * torch.tanh(self.deformation)

    def forward(self) -> tuple[Tensor, Tensor]:
        """The current surface: vertices (M, 3) and outward faces (F, 3)."""
        return marching_tetrahedra(self.vertices(), self.sdf, self.tets)
