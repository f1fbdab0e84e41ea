"""Turntable renders of a textured mesh (the result sheet every task writes; what quality tests measure)."""

from __future__ import annotations

import numpy as np
import torch

from ...mesh import Mesh, normalize
from ...render.surface import shade_uv_texture
from .views import fixed_views

TURNTABLE_VIEWS = 8


def render_turntable(
    mesh_n: Mesh, image: np.ndarray, uvs: np.ndarray, size: int = 256, views: int = TURNTABLE_VIEWS
) -> np.ndarray:
    """(views, size, size, 3) renders of the normalised mesh textured with `image` via `uvs`, white
    background.

    Args:
        mesh_n: mesh in the normalised frame ([-0.5, 0.5]^3).
        image: (S, S, ≥3) texture, top row first.
        uvs: (F, 3, 2) per-corner UVs.
        size: render width = height.
        views: number of views evenly spaced in azimuth (view 0 = front).
    """
    cams = fixed_views(views, size)
    with torch.no_grad():
        out = shade_uv_texture(
            cams,
            torch.tensor(mesh_n.vertices),
            torch.tensor(mesh_n.faces, dtype=torch.int32),
            torch.tensor(uvs),
            torch.tensor(image[..., :3]),
            torch.ones(views, 3),
        )
    return out.numpy()


def mesh_turntable(
    mesh: Mesh, image: np.ndarray, uvs: np.ndarray, size: int = 128, views: int = TURNTABLE_VIEWS
) -> np.ndarray:
    """Like `render_turntable` for a world-space mesh (normalised first): (views, size, size, 3).

    Args:
        mesh: world-space mesh.
        image, uvs, size, views: as `render_turntable`.
    """
    mesh_n, _ = normalize(mesh)
    return render_turntable(mesh_n, image, uvs, size=size, views=views)
