"""Multiresolution hash-grid encoding with tiny-cuda-nn's exact formulas and flat parameter layout.

Formulas (reference/render_perf.md §2.2; tiny-cuda-nn encodings/grid.h, common_device.h), per level l:

- scale_l = exp2(l * log2(per_level_scale)) * base_resolution - 1      (float32, as tcnn computes it)
- res_l   = ceil(scale_l) + 1
- pos = scale_l * x + 0.5; cell = floor(pos); frac = pos - cell; trilinear weights over the 2^D corners
- level size = min(next_multiple_of_8(res_l^D), 2^log2_hashmap_size) entries
- index: dense  x + y*res + z*res^2 (uint32) when res <= MAX_BASE[D] and res^D <= level size, else the
  coherent-prime hash (x*1) ^ (y*2654435761) ^ (z*805459861) in uint32 wrap-around; then % level size.

Parameters are one flat vector: levels consecutive, `n_features_per_level` values interleaved per entry,
so a state_dict moves between this torch backend and tinycudann.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engine import _optional

logger = logging.getLogger(__name__)

#: tiny-cuda-nn `coherent_prime_hash` factors, one per input dimension.
PRIMES: tuple[int, ...] = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
#: tiny-cuda-nn `grid_index` MAX_BASES: the largest resolution whose dense index fits in uint32, per D.
MAX_BASES: tuple[int, ...] = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class LevelInfo:
    """Static layout of one level.

    Args:
        scale: float32 grid scale (`scale_l` above).
        resolution: vertices per axis (`res_l`).
        size: entries in this level's table (`min(next_multiple_8(res^D), 2^T)`).
        offset: first entry of this level in the flat table.
        hashed: whether this level uses the hash (else the dense index).
    """

    scale: float
    resolution: int
    size: int
    offset: int
    hashed: bool


def level_layout(n_input_dims: int, n_levels: int, log2_hashmap_size: int, base_resolution: int,
                 per_level_scale: float) -> list[LevelInfo]:
    """Per-level scale, resolution, table size, offset and index mode, computed like tcnn (float32 math).

    Args:
        n_input_dims: D, the input dimension (1..7).
        n_levels: number of levels L.
        log2_hashmap_size: T, the log2 of the largest per-level table.
        base_resolution: vertices per axis of the coarsest level.
        per_level_scale: growth factor between levels.
    """
    if not 1 <= n_input_dims <= 7:
        raise ValueError(f"n_input_dims: must be in [1, 7], got {n_input_dims}")
    if n_levels < 1:
        raise ValueError(f"n_levels: must be >= 1, got {n_levels}")
    if not 1 <= log2_hashmap_size <= 31:
        raise ValueError(f"log2_hashmap_size: must be in [1, 31], got {log2_hashmap_size}")
    if base_resolution < 1:
        raise ValueError(f"base_resolution: must be >= 1, got {base_resolution}")
    if not per_level_scale >= 1.0:
        raise ValueError(f"per_level_scale: must be >= 1, got {per_level_scale}")
    f32 = np.float32
    log2_pls = f32(np.log2(f32(per_level_scale)))
    max_size = 1 << log2_hashmap_size
    out: list[LevelInfo] = []
    offset = 0
    for level in range(n_levels):
        scale = f32(f32(np.exp2(f32(f32(level) * log2_pls))) * f32(base_resolution)) - f32(1.0)
        res = int(math.ceil(float(scale))) + 1
        dense = res**n_input_dims
        size = min(-(-dense // 8) * 8, max_size)
        stride = dense if res <= MAX_BASES[n_input_dims] else _U32
        out.append(LevelInfo(float(scale), res, size, offset, size < stride))
        offset += size
    return out


def n_hashgrid_params(n_input_dims: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                      log2_hashmap_size: int = 19, base_resolution: int = 16,
                      per_level_scale: float = 1.447269237440378) -> int:
    """Number of parameters tcnn allocates for this config (without allocating them)."""
    layout = level_layout(n_input_dims, n_levels, log2_hashmap_size, base_resolution, per_level_scale)
    return sum(lv.size for lv in layout) * n_features_per_level


def _axis_view(t: Tensor, k: int, d: int) -> Tensor:
    """View (N, L, 2) values of axis k as (N, L, 2 | 1, ...) so broadcasting over axes builds the corner cube.

    The corner cube is laid out [bit_{d-1}, ..., bit_0], i.e. corner c = sum_k bit_k << k.
    """
    n, lv = t.shape[:2]
    return t.view([n, lv] + [1] * (d - 1 - k) + [2] + [1] * k)


def hashgrid_indices(x: Tensor, scales: Tensor, resolutions: Tensor, sizes: Tensor, offsets: Tensor,
                     hashed: Tensor) -> tuple[Tensor, Tensor]:
    """Flat table entries and multilinear weights of every corner of every level.

    Computed per axis and combined by broadcasting (2^D corners never materialise D coordinates each).

    Args:
        x: (N, D) float32 positions in [0, 1].
        scales, resolutions, sizes, offsets, hashed: (L,) per-level layout tensors on x's device
            (float32, int64, int64, int64, bool); hashed levels must have power-of-two sizes.

    Returns:
        idx: (N, L, 2^D) entry indices (int32 when they fit, else int64) into the flat table viewed as
            (entries, F);
            corner c has offset bit k on axis k.
        weights: (N, L, 2^D) interpolation weights (differentiable w.r.t. x).
    """
    n, d = x.shape
    n_levels = scales.shape[0]
    pos = x[:, None, :] * scales[None, :, None] + 0.5            # (N, L, D)
    cell_f = torch.floor(pos)
    frac = pos - cell_f
    cell = cell_f.to(torch.int64)
    corners = torch.stack([cell, cell + 1], -1)                  # (N, L, D, 2)
    # int32 corner arithmetic is exact when every (dense or masked) index stays below 2^30
    small = int(sizes.max()) <= (1 << 29) and int(offsets[-1] + sizes[-1]) < (1 << 31)
    idx_dtype = torch.int32 if small else torch.int64
    idx = torch.empty((n, n_levels, 1 << d), dtype=idx_dtype, device=x.device)
    for use_hash in (False, True):
        levels = torch.nonzero(hashed == use_hash).squeeze(1)
        if levels.numel() == 0:
            continue
        c = corners.index_select(1, levels)
        size = sizes[levels][None, :, None]
        acc = None
        if use_hash:
            # coherent-prime hash in uint32 wrap-around, then % size (a power of two): masking each axis
            # term before the XOR is the same as masking the XOR
            for k in range(d):
                comp = c[:, :, k] if PRIMES[k] == 1 else (c[:, :, k] * PRIMES[k]) & _U32
                comp = _axis_view((comp & (size - 1)).to(idx_dtype), k, d)
                acc = comp if acc is None else acc ^ comp
            acc = acc.reshape(n, -1, 1 << d)
        else:
            # dense x + y*res + z*res^2 (uint32), then % size; dense levels have res^D <= size, so the
            # raw index (coordinates up to res) is < 2 * size and one conditional subtraction is the modulo
            stride = torch.ones_like(resolutions[levels])
            for k in range(d):
                comp = _axis_view((c[:, :, k] * stride[None, :, None]).to(idx_dtype), k, d)
                acc = comp if acc is None else acc + comp
                stride = stride * resolutions[levels]
            acc = acc.reshape(n, -1, 1 << d)
            if not small:
                acc = acc & _U32
            acc = torch.where(acc >= size.to(idx_dtype), acc - size.to(idx_dtype), acc)
        idx[:, levels] = acc + offsets[levels][None, :, None].to(idx_dtype)
    w_axis = torch.stack([1.0 - frac, frac], -1)                 # (N, L, D, 2)
    w = None
    for k in range(d):
        comp = _axis_view(w_axis[:, :, k], k, d)
        w = comp if w is None else w * comp
    return idx, w.reshape(n, n_levels, 1 << d)


def scatter_table_grad(n_entries: int, idx: Tensor, w: Tensor, grad_out: Tensor,
                       use_index_add: bool | None = None) -> Tensor:
    """Gradient of sum_c w[m, c] * table[idx[m, c]] w.r.t. the (n_entries, F) table.

    Args:
        n_entries: table rows.
        idx: (M, C) integer entry indices.
        w: (M, C) weights.
        grad_out: (M, F) upstream gradient.
        use_index_add: index_add_ (atomics; the CUDA choice) or per-feature bincount (deterministic,
            faster on CPU); None picks by device.

    Returns:
        (n_entries, F) gradient in grad_out's dtype.
    """
    n_feat = grad_out.shape[1]
    flat_idx = idx.reshape(-1)
    if use_index_add is None:
        use_index_add = grad_out.is_cuda
    if use_index_add:
        src = (w[..., None] * grad_out[:, None, :]).reshape(-1, n_feat)          # (M*C, F)
        out = torch.zeros((n_entries, n_feat), dtype=grad_out.dtype, device=grad_out.device)
        return out.index_add_(0, flat_idx, src)
    cols = [torch.bincount(flat_idx, weights=(w * grad_out[:, f:f + 1]).reshape(-1), minlength=n_entries)
            for f in range(n_feat)]                                            # contiguous (M*C,) weights
    return torch.stack(cols, 1).to(grad_out.dtype)


class _WeightedGather(torch.autograd.Function):
    """out[m] = sum_c w[m, c] * table[idx[m, c]]: embedding_bag forward, scatter-add backward.

    Avoids keeping the (M, C, F) gathered features for autograd. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(table, idx, w)
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # noqa: D102
        table, idx, w = ctx.saved_tensors
        grad_table = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_table = scatter_table_grad(table.shape[0], idx, w, grad_out).to(table.dtype)
        if ctx.needs_input_grad[2]:
            grad_w = (table[idx] * grad_out[:, None, :]).sum(-1)
        return grad_table, None, grad_w


class HashGrid(nn.Module):
    """tiny-cuda-nn `HashGrid` encoding (Linear interpolation, CoherentPrime hash) in torch.

    Args:
        n_input_dims: D (3 for 3D fields).
        n_levels: L.
        n_features_per_level: F.
        log2_hashmap_size: T; each level has at most 2^T entries.
        base_resolution: vertices per axis at the coarsest level.
        per_level_scale: growth factor between levels.
        backend: "auto" (tinycudann for CUDA inputs when importable, else torch), "torch" or "tcnn".
        chunk_size: points per chunk in the torch backend (bounds the (N, L, 2^D) temporaries).

    `forward(x: (N, D) in [0, 1]) -> (N, L*F)` float32, level-major. `.params` is the flat tcnn table.
    """

    def __init__(self, n_input_dims: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16,
                 per_level_scale: float = 1.447269237440378, backend: str = "auto",
                 chunk_size: int = 1 << 16):
        super().__init__()
        if backend not in ("auto", "torch", "tcnn"):
            raise ValueError(f"backend: must be 'auto', 'torch' or 'tcnn', got {backend!r}")
        if n_features_per_level < 1:
            raise ValueError(f"n_features_per_level: must be >= 1, got {n_features_per_level}")
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.per_level_scale = float(per_level_scale)
        self.backend = backend
        self.chunk_size = int(chunk_size)
        self.levels = level_layout(n_input_dims, n_levels, log2_hashmap_size, base_resolution,
                                   per_level_scale)
        self.n_entries = sum(lv.size for lv in self.levels)
        self.n_output_dims = n_levels * n_features_per_level
        self.params = nn.Parameter(
            torch.empty(self.n_entries * n_features_per_level, dtype=torch.float32).uniform_(-1e-4, 1e-4))
        self.register_buffer("_scales", torch.tensor([lv.scale for lv in self.levels], dtype=torch.float32),
                             persistent=False)
        self.register_buffer("_res", torch.tensor([lv.resolution for lv in self.levels], dtype=torch.int64),
                             persistent=False)
        self.register_buffer("_sizes", torch.tensor([lv.size for lv in self.levels], dtype=torch.int64),
                             persistent=False)
        self.register_buffer("_offsets", torch.tensor([lv.offset for lv in self.levels], dtype=torch.int64),
                             persistent=False)
        self.register_buffer("_hashed", torch.tensor([lv.hashed for lv in self.levels], dtype=torch.bool),
                             persistent=False)
        self._tcnn: list[nn.Module] = []     # kept out of the module tree so state_dict holds only `params`

    def tcnn_config(self) -> dict:
        """The tiny-cuda-nn encoding config equivalent to this grid."""
        return {"otype": "Grid", "type": "Hash", "n_levels": self.n_levels,
                "n_features_per_level": self.n_features_per_level,
                "log2_hashmap_size": self.log2_hashmap_size,
                "base_resolution": self.base_resolution, "per_level_scale": self.per_level_scale,
                "interpolation": "Linear", "hash": "CoherentPrime"}

    def _use_tcnn(self, x: Tensor) -> bool:
        if self.backend == "torch" or not x.is_cuda:
            if self.backend == "tcnn":
                raise RuntimeError("backend='tcnn' needs CUDA inputs")
            return False
        available = _optional.tinycudann() is not None
        if self.backend == "tcnn" and not available:
            raise RuntimeError("backend='tcnn' requested but tinycudann is not importable")
        return available

    def _tcnn_forward(self, x: Tensor) -> Tensor:
        tcnn = _optional.tinycudann()
        if not self._tcnn:
            enc = tcnn.Encoding(self.n_input_dims, self.tcnn_config(), dtype=torch.float32)
            if enc.params.numel() != self.params.numel():
                raise RuntimeError(f"tinycudann allocates {enc.params.numel()} parameters, torch layout has "
                                   f"{self.params.numel()}; refusing to mix layouts")
            self._tcnn.append(enc.to(x.device))
        enc = self._tcnn[0]
        enc.params = self.params       # share the one flat table (same layout)
        return enc(x.contiguous()).float()[:, : self.n_output_dims]

    def forward(self, x: Tensor) -> Tensor:
        """Encode points.

        Args:
            x: (N, D) positions in [0, 1]; the torch backend clamps to [0, 1] (tcnn would wrap around).

        Returns:
            (N, n_levels * n_features_per_level) float32, level-major, features interleaved per level.
        """
        if x.ndim != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"x: expected shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        x = x.float()
        if self._use_tcnn(x):
            return self._tcnn_forward(x)
        x = x.clamp(0.0, 1.0)
        if x.shape[0] <= self.chunk_size:
            return self._torch_forward(x)
        return torch.cat([self._torch_forward(c) for c in x.split(self.chunk_size)], 0)

    def _torch_forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        idx, w = hashgrid_indices(x, self._scales, self._res, self._sizes, self._offsets, self._hashed)
        table = self.params.view(-1, self.n_features_per_level)
        out = _WeightedGather.apply(table, idx.view(n * self.n_levels, -1), w.view(n * self.n_levels, -1))
        return out.reshape(n, self.n_output_dims)                                       # (N, L*F)

    def extra_repr(self) -> str:
        return (f"D={self.n_input_dims}, L={self.n_levels}, F={self.n_features_per_level}, "
                f"T={self.log2_hashmap_size}, base={self.base_resolution}, "
                f"per_level_scale={self.per_level_scale:.6g}, params={self.params.numel()}, "
                f"backend={self.backend}")
