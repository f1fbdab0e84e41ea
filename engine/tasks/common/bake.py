"""Bake a colour field into a mesh's UVs (the user's, else xatlas) with seam padding, for every task."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...mesh import Mesh, bake, ensure_uvs


@dataclass
class BakedTexture:
    """A baked texture and the UVs it belongs to.

    Attributes:
        image: (S, S, C) float32, top row first (row 0 ↔ v = 1).
        uvs: (F, 3, 2) float32 per-corner UVs of the mesh's faces.
        unwrapped: True when xatlas made the UVs, False when the mesh's own were kept.
    """

    image: np.ndarray
    uvs: np.ndarray
    unwrapped: bool


def bake_field(
    field: Callable[[torch.Tensor], torch.Tensor],
    mesh: Mesh,
    mesh_n: Mesh,
    size: int,
    device: torch.device | str = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> BakedTexture:
    """Bake `field` (defined in the normalised frame) into `mesh`'s UVs (xatlas unwrap when it has none).

    Args:
        field: points (N, 3) in the normalised frame → colours (N, C).
        mesh: world-space mesh (its UVs are used when present; xatlas results are cached per mesh).
        mesh_n: the same mesh normalised (same faces), where the field is evaluated.
        size: texture width = height.
        device: the field's device.
        should_stop: the job's cancel check, honoured between bake chunks (CancelledError).
    """
    uvs, unwrapped = ensure_uvs(mesh)
    with torch.no_grad():
        image = bake(
            lambda pts: field(pts.to(device)).float().cpu(), dataclasses.replace(mesh_n, uvs=uvs), size,
            should_stop=should_stop,
        )
    return BakedTexture(image=image, uvs=uvs.astype(np.float32), unwrapped=unwrapped)


def bake_field_to_shape(field, mesh: Mesh, mesh_n: Mesh, shape: tuple[int, int], device,
                        should_stop: Callable[[], bool] | None = None) -> BakedTexture:
    """Like `bake_field`, for an H × W texture: baked at max(H, W)² and resized when not square (the UV square maps
    onto any H × W). The image has 3 channels.

    Args:
        field, mesh, mesh_n, device, should_stop: as `bake_field`.
        shape: (H, W) of the output.
    """
    import torch.nn.functional as F

    h, w = int(shape[0]), int(shape[1])
    baked = bake_field(field, mesh, mesh_n, max(h, w), device, should_stop=should_stop)
    image = baked.image[..., :3]
    if h != w:
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        image = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        image = image.permute(1, 2, 0).clamp(0, 1).numpy()
    return dataclasses.replace(baked, image=np.ascontiguousarray(image, dtype=np.float32))
