"""Plain image statistics for edits: an analytic striped sphere and the layout correlation of two renders."""
from __future__ import annotations

import numpy as np
from texture_stats import in_family, mean_hue, object_mask

RED = (0.85, 0.08, 0.08)
WHITE = (0.95, 0.95, 0.95)


def uv_sphere(rings: int = 24, segments: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A latitude-longitude sphere of radius 0.5 with per-corner UVs (u = azimuth, v = latitude, v = 1 on top).

    Returns:
        vertices (V, 3) float32, faces (F, 3) int32, uvs (F, 3, 2) float32.
    """
    theta = np.linspace(0, np.pi, rings + 1)            # from the top (+Z) down
    phi = np.linspace(0, 2 * np.pi, segments + 1)       # seam column repeated: one vertex per UV
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = 0.5 * np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    uv = np.stack([p / (2 * np.pi), 1 - t / np.pi], -1).reshape(-1, 2)
    idx = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    faces = faces[np.abs(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]],
                                  verts[faces[:, 2]] - verts[faces[:, 0]])).sum(1) > 1e-9]
    return verts.astype(np.float32), faces.astype(np.int32), uv[faces].astype(np.float32)


def striped_texture(size: int = 256, cycles: float = 3.5, colour=RED, other=WHITE) -> np.ndarray:
    """(size, size, 3) texture of `uv_sphere` with horizontal bands: `cycles` periods over the sphere's height
    (world Z), the toy prior's "striped" pattern; top row first (row 0 ↔ v = 1, the north pole)."""
    v = 1 - (np.arange(size) + 0.5) / size
    z = 0.5 * np.cos(np.pi * (1 - v))
    band = np.sin(2 * np.pi * cycles * z) > 0
    row = np.where(band[:, None], np.asarray(colour), np.asarray(other))
    return np.repeat(row[:, None, :], size, axis=1).astype(np.float32)


def binarised_luminance(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Object pixels' luminance thresholded at its median: (N,) float 0/1."""
    lum = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    values = lum[mask]
    return (values > np.median(values)).astype(np.float64)


def layout_correlation(before: np.ndarray, after: np.ndarray) -> float:
    """Mean over views of the Pearson correlation between the binarised luminance patterns of two (V, H, W, 3)
    renders of the same object from the same views (object pixels of `before`)."""
    scores = []
    for b, a in zip(before, after):
        mask = object_mask(b)
        x, y = binarised_luminance(b, mask), binarised_luminance(a, mask)
        scores.append(0.0 if x.std() == 0 or y.std() == 0 else float(np.corrcoef(x, y)[0, 1]))
    return float(np.mean(scores))


def views_in_family(views: np.ndarray, colour: str) -> int:
    """How many of the (V, H, W, 3) renders have their mean object colour in `colour`'s hue family."""
    return sum(in_family(*mean_hue(v, object_mask(v)), colour) for v in views)


def silhouettes(vertices: np.ndarray, faces: np.ndarray, views: int = 8, size: int = 96) -> np.ndarray:
    """(views, size, size) bool masks of a mesh (in the frame it is given in) from the turntable views."""
    import torch

    from engine.render.rasterize import rasterize
    from engine.tasks.common.views import fixed_views

    cams = fixed_views(views, size, distance=3.0)
    rast = rasterize(cams.clip_positions(torch.tensor(vertices, dtype=torch.float32)),
                     torch.tensor(faces, dtype=torch.int32), (size, size))
    return (rast[..., 3] > 0).numpy()


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two stacks of masks (all views together)."""
    return float((a & b).sum() / max((a | b).sum(), 1))
