"""UV maps that do not fit one texture: faces outside 0-1 (UDIM) and stacked or mirrored faces (numpy only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csd_blender.scene.uv_check import coverage_counts, uv_report

SPOT = Path(__file__).resolve().parents[2] / "engine" / "assets" / "meshes" / "spot.obj"
SQUARE = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], dtype=np.float64)


def grid(n: int, scale: float = 1.0) -> np.ndarray:
    """(2 n², 3, 2) triangles of an n x n grid of quads over [0, scale]²: shared edges everywhere."""
    g = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="xy"), -1).reshape(-1, 2) * (scale / n)
    d = scale / n
    return np.concatenate([np.stack([g, g + [d, 0], g + [d, d]], 1), np.stack([g, g + [d, d], g + [0, d]], 1)])


def test_a_clean_layout_has_no_problems_and_shared_edges_are_not_overlaps():
    for uvs in (SQUARE, grid(37), grid(64, 0.5)):
        report = uv_report(uvs, "UVMap")
        assert report.problems() == [] and report.overlap == 0.0 and report.tiles == [1001]
    assert uv_report(grid(37), "UVMap").coverage > 0.97


def test_stacked_and_mirrored_faces_are_overlaps():
    stacked = uv_report(np.concatenate([SQUARE, SQUARE * 0.5]), "UVMap")
    assert stacked.overlap == pytest.approx(0.25, abs=0.02)     # the half-size copy covers a quarter
    assert "overlapping faces" in stacked.problems()[0] and "'UVMap'" in stacked.problems()[0]
    mirrored = uv_report(np.concatenate([SQUARE, SQUARE[:, ::-1]]), "UVMap")   # reversed winding
    assert mirrored.overlap == 1.0


def test_udim_tiles_and_tiling_are_outside_the_square():
    udim = uv_report(np.concatenate([SQUARE * 0.9, SQUARE * 0.9 + [1, 0], SQUARE * 0.9 + [0, 1]]), "UDIM")
    assert udim.tiles == [1001, 1002, 1011] and udim.outside == pytest.approx(2 / 3)
    assert "UDIM tiles 1001, 1002, 1011" in udim.problems()[0]
    tiled = uv_report(SQUARE * 3 - 1, "Tiled")
    assert tiled.outside == 1.0 and "tiles beyond 0-1" in tiled.problems()[0]
    # a sliver past the edge (seam padding) is not a problem
    assert uv_report(np.concatenate([grid(20), SQUARE * 0.01 + [1.0, 0.5]]), "UVMap").problems() == []


def test_coverage_counts_each_texel_centre_once_per_covering_face():
    counts = coverage_counts(np.concatenate([SQUARE, SQUARE * 0.5]), 8)
    assert counts.shape == (8, 8)
    assert (counts[:4, :4] == 2).sum() >= 12 and counts[4:, 4:].max() == 1 and counts.max() == 2
    # row 0 is v near 0: a face in the bottom-left corner only
    corner = coverage_counts(SQUARE * 0.25, 8)
    assert corner[:2, :2].sum() > 0 and corner[2:, :].sum() == 0 and corner[:, 2:].sum() == 0


def test_real_asset_uvs_pass():
    import trimesh

    mesh = trimesh.load(SPOT, process=False)
    report = uv_report(mesh.visual.uv[mesh.faces], "spot")
    assert report.problems() == [] and report.overlap == 0.0 and 0.3 < report.coverage < 0.8
