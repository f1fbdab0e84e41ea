"""Mesh loading, validation (each bad input: MeshError with a specific message), normalisation, unwrap."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh
from paths import SHARED_MESHES

from csd_blender.protocol.errors import ErrorCode
from engine.errors import MeshError
from engine.mesh import Mesh, clear_unwrap_cache, ensure_uvs, load_mesh, normalize, unwrap, validate_mesh

needs_meshes = pytest.mark.skipif(not SHARED_MESHES.is_dir(), reason="test meshes folder ../shared/meshes is absent")

TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)


# ---------------------------------------------------------------- validation
def test_valid_mesh_passes_and_casts():
    mesh, dropped = validate_mesh(TETRA_V.astype(np.float64), TETRA_F.astype(np.int32))
    assert dropped == 0 and mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64
    assert mesh.num_faces == 4 and mesh.uvs is None


def test_nan_vertex():
    v = TETRA_V.copy()
    v[2, 1] = np.nan
    with pytest.raises(MeshError, match=r"vertices: 1 vertices have non-finite .* first is vertex 2") as e:
        validate_mesh(v, TETRA_F)
    assert e.value.code == ErrorCode.INVALID_MESH


def test_index_out_of_range():
    f = TETRA_F.copy()
    f[3, 2] = 4
    with pytest.raises(MeshError, match=r"faces: vertex index 4 out of range for 4 vertices \(face 3\)"):
        validate_mesh(TETRA_V, f)


def test_negative_index():
    f = TETRA_F.copy()
    f[1, 0] = -1
    with pytest.raises(MeshError, match=r"faces: negative vertex index -1 \(face 1\)"):
        validate_mesh(TETRA_V, f)


def test_zero_faces():
    with pytest.raises(MeshError, match="faces: the mesh has zero faces"):
        validate_mesh(TETRA_V, np.zeros((0, 3), np.int64))
    with pytest.raises(MeshError, match="faces: the mesh has zero faces"):
        validate_mesh(TETRA_V, [])
    with pytest.raises(MeshError, match=r"faces: expected shape \(F, 3\) triangles, got \(2, 4\)"):
        validate_mesh(TETRA_V, np.zeros((2, 4), np.int64))


def test_float_faces_rejected():
    with pytest.raises(MeshError, match="faces: expected an integer dtype, got float"):
        validate_mesh(TETRA_V, TETRA_F.astype(np.float32))


def test_all_degenerate_faces():
    f = np.array([[0, 0, 1], [2, 2, 2]])
    v = np.concatenate([TETRA_V, [[2, 0, 0]]]).astype(np.float32)
    collinear = np.array([[0, 1, 4]])                   # (0,0,0), (1,0,0), (2,0,0): zero area
    with pytest.raises(MeshError, match=r"faces: all 3 faces are degenerate \(zero area or a repeated"):
        validate_mesh(v, np.concatenate([f, collinear]))


def test_some_degenerate_faces_dropped_and_counted():
    f = np.concatenate([TETRA_F, [[0, 0, 1], [1, 2, 1]]])
    uvs = np.random.rand(6, 3, 2).astype(np.float32)
    mesh, dropped = validate_mesh(TETRA_V, f, uvs)
    assert dropped == 2 and mesh.num_faces == 4
    np.testing.assert_array_equal(mesh.uvs, uvs[:4])


def test_limits_and_uv_shape():
    with pytest.raises(MeshError, match="faces: 4 faces; the limit is 3") as e:
        validate_mesh(TETRA_V, TETRA_F, max_faces=3)
    assert e.value.code == ErrorCode.MESH_TOO_LARGE
    with pytest.raises(MeshError, match="vertices: 4 vertices; the limit is 2"):
        validate_mesh(TETRA_V, TETRA_F, max_vertices=2)
    with pytest.raises(MeshError, match=r"uvs: expected shape \(4, 3, 2\)"):
        validate_mesh(TETRA_V, TETRA_F, np.zeros((4, 2)))
    with pytest.raises(MeshError, match=r"vertices: expected shape \(V, 3\)"):
        validate_mesh(TETRA_V[:, :2], TETRA_F)


# ---------------------------------------------------------------- files
def test_empty_file(tmp_path):
    p = tmp_path / "empty.obj"
    p.write_bytes(b"")
    with pytest.raises(MeshError, match="mesh file is empty: empty.obj"):
        load_mesh(p)


def test_text_file_renamed_obj(tmp_path):
    p = tmp_path / "notes.obj"
    p.write_text("Dear diary,\nthis is not a mesh at all.\n")
    with pytest.raises(MeshError, match="notes.obj contains no triangles: not a mesh file"):
        load_mesh(p)


def test_png_renamed_obj(tmp_path):
    from PIL import Image

    png = tmp_path / "picture.png"
    Image.fromarray(np.random.randint(0, 255, (16, 16, 3), np.uint8)).save(png)
    p = tmp_path / "picture.obj"
    p.write_bytes(png.read_bytes())
    with pytest.raises(MeshError, match=r"picture.obj (contains no triangles: not a mesh file|"
                                        r"as OBJ: not a valid mesh file)"):
        load_mesh(p)


def test_png_renamed_glb_and_ply(tmp_path):
    for ext in ("glb", "ply", "stl"):
        p = tmp_path / f"garbage.{ext}"
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        pattern = rf"garbage.{ext} (contains no triangles|as {ext.upper()}: not a valid)"
        with pytest.raises(MeshError, match=pattern):
            load_mesh(p)


def test_unsupported_extension(tmp_path):
    p = tmp_path / "model.fbx"
    p.write_text("x")
    with pytest.raises(MeshError, match=r"unsupported mesh format '.fbx' for model.fbx; supported: .obj"):
        load_mesh(p)


def test_missing_file(tmp_path):
    with pytest.raises(MeshError, match="mesh file not found: .*nope.obj"):
        load_mesh(tmp_path / "nope.obj")


def test_nan_in_obj_file(tmp_path):
    p = tmp_path / "nan.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match="vertices: 1 vertices have non-finite"):
        load_mesh(p)


@pytest.mark.parametrize("ext", ["ply", "stl", "glb", "obj"])
def test_formats_round_trip(tmp_path, ext):
    box = trimesh.creation.box(extents=(1, 2, 3))
    p = tmp_path / f"box.{ext}"
    box.export(p)
    mesh = load_mesh(p)
    assert mesh.num_faces == 12
    np.testing.assert_allclose(mesh.vertices.min(0), [-0.5, -1, -1.5], atol=1e-6)
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2
    assert area == pytest.approx(2 * (1 * 2 + 2 * 3 + 1 * 3))


def test_scene_graph_transforms_applied(tmp_path):
    scene = trimesh.Scene()
    a = trimesh.creation.box(extents=(1, 1, 1))
    scene.add_geometry(a, node_name="a", transform=trimesh.transformations.translation_matrix([10, 0, 0]))
    move = trimesh.transformations.translation_matrix([0, 0, -5])
    scene.add_geometry(a.copy(), node_name="b", transform=move)
    p = tmp_path / "scene.glb"
    scene.export(p)
    mesh = load_mesh(p)
    assert mesh.num_faces == 24
    np.testing.assert_allclose(mesh.vertices.max(0), [10.5, 0.5, 0.5], atol=1e-5)
    np.testing.assert_allclose(mesh.vertices.min(0), [-0.5, -0.5, -5.5], atol=1e-5)


def test_quads_triangulated_and_obj_uvs_per_corner(tmp_path):
    p = tmp_path / "quad.obj"
    # a quad split over a UV seam: vertex 2 has two different vt in the two faces
    p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 1 0\n"
                 "vt 0 0\nvt 0.5 0\nvt 0.5 0.5\nvt 0 0.5\nvt 0.9 0.9\nvt 0.8 0.8\n"
                 "f 1/1 2/2 3/3 4/4\nf 2/2 5/5 3/6\n")
    mesh = load_mesh(p)
    assert mesh.num_faces == 3 and mesh.num_vertices == 5         # welded back to the 5 positions
    corners = {tuple(np.round(pos.astype(float), 4)) + tuple(np.round(uv.astype(float), 4))
               for pos, uv in zip(mesh.vertices[mesh.faces].reshape(-1, 3), mesh.uvs.reshape(-1, 2))}
    assert (1, 1, 0, 0.5, 0.5) in corners and (1, 1, 0, 0.8, 0.8) in corners
    assert (2, 1, 0, 0.9, 0.9) in corners and (0, 1, 0, 0, 0.5) in corners


@needs_meshes
def test_spot_uvs_match_the_file():
    mesh = load_mesh(SHARED_MESHES / "spot.obj")
    v, vt, fv, ft = [], [], [], []
    for line in (SHARED_MESHES / "spot.obj").read_text().splitlines():
        p = line.split()
        if p and p[0] == "v":
            v.append([float(x) for x in p[1:4]])
        elif p and p[0] == "vt":
            vt.append([float(x) for x in p[1:3]])
        elif p and p[0] == "f":
            fv.append([int(x.split("/")[0]) - 1 for x in p[1:]])
            ft.append([int(x.split("/")[1]) - 1 for x in p[1:]])
    np.testing.assert_allclose(mesh.vertices[mesh.faces], np.array(v)[fv], atol=1e-6)
    np.testing.assert_allclose(mesh.uvs, np.array(vt)[ft], atol=1e-6)
    assert mesh.num_vertices == len(v)


@needs_meshes
def test_suzanne_mixed_quads():
    mesh = load_mesh(SHARED_MESHES / "suzanne.obj")
    assert mesh.num_faces == 32 + 2 * 468 and mesh.uvs is None


# ---------------------------------------------------------------- normalise / unwrap
def test_normalize_round_trip():
    v = np.array([[1, 2, 3], [5, 2, 3], [1, 4, 3], [1, 2, 4]], np.float32)
    mesh, norm = normalize(Mesh(v, TETRA_F))
    np.testing.assert_allclose(mesh.vertices.max(0) - mesh.vertices.min(0), [1, 0.5, 0.25], atol=1e-6)
    np.testing.assert_allclose((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, 0, atol=1e-6)
    np.testing.assert_allclose(norm.invert(mesh.vertices), v, atol=1e-5)
    np.testing.assert_allclose(norm.apply(v), mesh.vertices, atol=1e-6)


def test_normalize_point_mesh_fails():
    with pytest.raises(MeshError, match="all vertices coincide"):
        normalize(Mesh(np.ones((3, 3), np.float32), np.array([[0, 1, 2]])))


def test_unwrap_keeps_face_order_and_caches(monkeypatch):
    ico = trimesh.creation.icosphere(subdivisions=2)
    mesh = Mesh(ico.vertices.astype(np.float32), ico.faces.astype(np.int64))
    clear_unwrap_cache()
    uvs = unwrap(mesh)
    assert uvs.shape == (mesh.num_faces, 3, 2) and uvs.dtype == np.float32
    assert uvs.min() >= 0 and uvs.max() <= 1
    # UV triangles are non-degenerate and, per face, the UV-area / 3D-area ratio is roughly uniform
    e1, e2 = uvs[:, 1] - uvs[:, 0], uvs[:, 2] - uvs[:, 0]
    uv_area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) / 2
    tri = mesh.vertices[mesh.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    ratio = uv_area / area
    assert (uv_area > 0).all() and ratio.max() / ratio.min() < 3
    xatlas = sys.modules["xatlas"]
    monkeypatch.setattr(xatlas, "Atlas", lambda: (_ for _ in ()).throw(AssertionError("not cached")))
    np.testing.assert_array_equal(unwrap(mesh), uvs)             # served from the cache


def test_ensure_uvs_prefers_own():
    own = np.random.rand(4, 3, 2).astype(np.float32)
    uvs, unwrapped = ensure_uvs(Mesh(TETRA_V, TETRA_F, own))
    assert not unwrapped and np.array_equal(uvs, own)
    uvs, unwrapped = ensure_uvs(Mesh(TETRA_V, TETRA_F))
    assert unwrapped and uvs.shape == (4, 3, 2)
