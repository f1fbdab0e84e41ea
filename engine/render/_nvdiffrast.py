"""nvdiffrast backend for `engine.render.rasterize` (used only when importable and the inputs are on CUDA).

nvdiffrast differences from the torch backend (reference/render_perf.md §1.3): it clips triangles that cross
the near plane instead of dropping them, snaps vertices to a sub-pixel grid (a few face ids differ at shared
edges), and needs float32 contiguous CUDA tensors and int32 indices.
"""
from __future__ import annotations

import logging
from types import ModuleType

import torch
from torch import Tensor

from .. import _optional

logger = logging.getLogger(__name__)

_contexts: dict[int, object] = {}


def available(device: torch.device) -> bool:
    """Whether the nvdiffrast backend can run on `device`.

    Args:
        device: the device of the inputs.
    """
    return device.type == "cuda" and _optional.nvdiffrast() is not None


def _module() -> ModuleType:
    dr = _optional.nvdiffrast()
    if dr is None:
        raise RuntimeError("backend='nvdiffrast' requested but nvdiffrast is not importable "
                           "(or CUDA is absent)")
    return dr


def _context(device: torch.device):
    """One `RasterizeCudaContext` per CUDA device, created on first use (creation is expensive)."""
    dr = _module()
    index = device.index if device.index is not None else torch.cuda.current_device()
    ctx = _contexts.get(index)
    if ctx is None:
        ctx = dr.RasterizeCudaContext(device=torch.device("cuda", index))
        _contexts[index] = ctx
        logger.debug("created nvdiffrast RasterizeCudaContext on cuda:%d", index)
    return ctx


def rasterize_nvdiffrast(pos: Tensor, tri: Tensor, height: int, width: int) -> Tensor:
    """`nvdiffrast.torch.rasterize` in instanced mode.

    Args:
        pos: (B, V, 4) clip-space positions on a CUDA device.
        tri: (F, 3) integer indices.
        height, width: output size (any size; nvdiffrast >= 0.3.2 accepts non-multiples of 8).
    Returns:
        (B, H, W, 4) float32 (u, v, z/w, triangle_id + 1), differentiable w.r.t. pos through u, v.
    """
    if pos.device.type != "cuda":
        raise RuntimeError(f"nvdiffrast backend needs CUDA tensors, got pos on {pos.device}")
    dr = _module()
    ctx = _context(pos.device)
    tri32 = tri.to(device=pos.device, dtype=torch.int32).contiguous()
    rast, _ = dr.rasterize(ctx, pos.float().contiguous(), tri32, resolution=(height, width))
    return rast


def antialias_nvdiffrast(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor) -> Tensor:
    """`nvdiffrast.torch.antialias` (analytic silhouette-edge anti-aliasing with geometry gradients).

    Args:
        color: (B, H, W, C) CUDA tensor.
        rast: (B, H, W, 4) rasterizer output for the same pos/tri.
        pos: (B, V, 4) clip-space positions.
        tri: (F, 3) integer indices.
    Returns:
        (B, H, W, C) float32.
    """
    dr = _module()
    tri32 = tri.to(device=pos.device, dtype=torch.int32).contiguous()
    return dr.antialias(color.float().contiguous(), rast.float().contiguous(), pos.float().contiguous(),
                        tri32)
