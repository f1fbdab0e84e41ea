"""Bake round trip: analytic field -> UV texture -> GLB/OBJ -> trimesh re-import -> sampled colours match."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from engine.fields import TextureField, TextureFieldConfig
from engine.mesh import (Mesh, bake, bake_texture, ensure_uvs, export_glb, export_obj, load_mesh, normalize,
                         split_by_uv)
from paths import SHARED_MESHES

needs_meshes = pytest.mark.skipif(not SHARED_MESHES.is_dir(), reason="test meshes folder ../shared/meshes is absent")
SIZE = 512


def analytic(p):
    """Smooth colour field, torch (N, 3) -> (N, 3) in [0.1, 0.9]."""
    return 0.5 + 0.4 * torch.sin(3.0 * p + torch.tensor([0.0, 1.0, 2.0]))


def analytic_np(p: np.ndarray) -> np.ndarray:
    return 0.5 + 0.4 * np.sin(3.0 * p + np.array([0.0, 1.0, 2.0]))


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample a top-row-first (H, W, C) image at uv (N, 2) with v up (OpenGL/trimesh), clamp to edge."""
    h, w = image.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    px = lambda yy, xx: image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # noqa: E731
    return ((1 - fx) * (1 - fy) * px(y0, x0) + fx * (1 - fy) * px(y0, x0 + 1)
            + (1 - fx) * fy * px(y0 + 1, x0) + fx * fy * px(y0 + 1, x0 + 1))


def sample_surface(tm: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random points inside faces (uniform barycentrics) -> (positions (n, 3), uvs (n, 2))."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, len(tm.faces), n)
    b = rng.random((n, 2))
    flip = b.sum(1) > 1
    b[flip] = 1 - b[flip]
    bary = np.column_stack([1 - b.sum(1), b])
    corners = tm.faces[faces]
    pos = np.einsum("nk,nkc->nc", bary, tm.vertices[corners])
    uv = np.einsum("nk,nkc->nc", bary, tm.visual.uv[corners])
    return pos, uv


def reimported(path: Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Load an exported file with trimesh; return the mesh and its attached texture (float, top row first)."""
    loaded = trimesh.load(path)
    tm = loaded if isinstance(loaded, trimesh.Trimesh) else next(iter(loaded.geometry.values()))
    assert isinstance(tm.visual, trimesh.visual.TextureVisuals) and tm.visual.uv is not None
    mat = tm.visual.material
    img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
    assert img is not None, "texture not attached on re-import"
    return tm, np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def chebyshev_dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        p = np.pad(out, 1)
        out = np.max([p[1 + dy: p.shape[0] - 1 + dy, 1 + dx: p.shape[1] - 1 + dx]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    return out


def round_trip(mesh: Mesh, tmp_path: Path, fmt: str) -> float:
    """Bake + export + re-import + sample; returns the fraction of points within 3/255."""
    result = bake_texture(analytic, mesh, SIZE, padding=8)
    img = result.image
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.float32
    # every empty texel within 4 texels of a covered texel was padded, and nothing was left black there
    near = chebyshev_dilate(result.coverage, 4)
    assert result.filled[near].all()
    assert (img[near].max(axis=1) > 0.05).all()          # the analytic field is >= 0.1 everywhere
    path = export_glb(tmp_path / "baked.glb", mesh, img) if fmt == "glb" else \
        export_obj(tmp_path / "obj", mesh, img, name="baked")
    tm, tex = reimported(path)
    pos, uv = sample_surface(tm, 20000)
    err = np.abs(bilinear(tex, uv) - analytic_np(pos)).max(axis=1)
    return float((err <= 3.0 / 255.0).mean())


@needs_meshes
def test_round_trip_own_uvs_spot(tmp_path):
    mesh, _ = normalize(load_mesh(SHARED_MESHES / "spot.obj"))
    assert mesh.uvs is not None
    assert round_trip(mesh, tmp_path, "glb") >= 0.99


@needs_meshes
def test_round_trip_xatlas_suzanne_obj(tmp_path):
    mesh, _ = normalize(load_mesh(SHARED_MESHES / "suzanne.obj"))
    uvs, unwrapped = ensure_uvs(mesh)
    assert unwrapped and mesh.uvs is None
    assert round_trip(mesh.with_uvs(uvs), tmp_path, "obj") >= 0.99


def test_round_trip_xatlas_icosphere_glb(tmp_path):
    ico = trimesh.creation.icosphere(subdivisions=3)
    mesh, _ = normalize(Mesh(ico.vertices.astype(np.float32), ico.faces.astype(np.int64)))
    uvs, unwrapped = ensure_uvs(mesh)
    assert unwrapped
    assert round_trip(mesh.with_uvs(uvs), tmp_path, "glb") >= 0.99


def test_top_row_first_and_padding_ring():
    # one triangle covering the lower-left half of UV space: v small <-> bottom rows of the image
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]]),
                np.array([[[0.05, 0.05], [0.6, 0.05], [0.05, 0.6]]], np.float32))
    res = bake_texture(lambda p: p[:, :1].expand(-1, 3) * 0 + 0.5 + 0.4 * p[:, 1:2], mesh, 64, padding=3)
    cov = res.coverage
    assert cov[-10, 10] and not cov[10, 10]                # bottom-left covered, top-left empty
    # image brightness follows v (y = v here): a covered texel higher up is brighter
    assert res.image[-30, 10, 0] > res.image[-10, 10, 0]
    ring3 = chebyshev_dilate(cov, 3)
    assert res.filled[ring3].all() and not res.filled[~chebyshev_dilate(cov, 4)].any()
    assert (res.image[~res.filled] == 0).all()


def test_supersample_and_field_module():
    torch.manual_seed(0)
    field = TextureField(TextureFieldConfig(n_levels=4, log2_hashmap_size=10, max_resolution=64))
    ico = trimesh.creation.icosphere(subdivisions=1)
    mesh, _ = normalize(Mesh(ico.vertices.astype(np.float32), ico.faces.astype(np.int64)))
    mesh = mesh.with_uvs(ensure_uvs(mesh)[0])
    img1 = bake(field, mesh, 32, supersample=1)
    img2 = bake(field, mesh, 32, supersample=2)
    assert img1.shape == img2.shape == (32, 32, 3)
    assert ((img1 >= 0) & (img1 <= 1)).all() and np.isfinite(img2).all()


def test_split_by_uv_keeps_corners_exact():
    mesh = Mesh(np.random.rand(4, 3).astype(np.float32), np.array([[0, 1, 2], [0, 2, 3]]),
                np.array([[[0, 0], [1, 0], [1, 1]], [[0.5, 0.5], [1, 1], [0, 1]]], np.float32))
    v, f, uv = split_by_uv(mesh)
    assert len(v) == 5                               # vertex 0 has two UVs, vertex 2 shares (1, 1)
    np.testing.assert_array_equal(uv[f], mesh.uvs)
    np.testing.assert_array_equal(v[f], mesh.vertices[mesh.faces])


def test_bake_needs_uvs():
    mesh = Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="ensure_uvs"):
        bake(analytic, mesh, 16)


def test_png_helpers_round_trip(tmp_path):
    from PIL import Image

    from engine.mesh import load_texture_image, save_png

    img = np.zeros((8, 4, 3), np.float32)
    img[0] = [1.0, 0.0, 0.0]                      # top row red
    img[1:, :, 2] = np.linspace(0, 1, 4)
    p = save_png(tmp_path / "t.png", img)
    assert Image.open(p).getpixel((0, 0)) == (255, 0, 0)   # PIL (x, y): top-left is red
    back = load_texture_image(p)
    assert back.shape == (8, 4, 3) and back.dtype == np.float32
    np.testing.assert_allclose(back, img, atol=0.5 / 255 + 1e-6)
