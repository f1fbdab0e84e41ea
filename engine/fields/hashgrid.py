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

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _optional

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


@dataclass(frozen=True)
class IndexPlan:
    """Host-side facts `hashgrid_indices` needs, known when the grid is built: no device reads per call.

    Attributes:
        groups: maximal runs of consecutive levels with one index mode, as (start, stop, hashed).
        resolutions, sizes, offsets: per-level layout.
        small: every index fits int32 (the returned dtype is int32, else int64).
        int32_math: every intermediate product fits int32 too (corner × hash prime taken modulo the level
            size first, which the power-of-two `% size` allows), so the corner arithmetic runs in int32.
    """

    groups: tuple[tuple[int, int, bool], ...]
    resolutions: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    small: bool
    int32_math: bool

    @classmethod
    def from_layout(cls, resolutions, sizes, offsets, hashed, n_input_dims: int) -> IndexPlan:
        """Build the plan from per-level values (Python sequences).

        Args:
            resolutions, sizes, offsets, hashed: per-level layout (`LevelInfo` fields).
            n_input_dims: D.
        """
        res, size, off = (tuple(int(v) for v in seq) for seq in (resolutions, sizes, offsets))
        hashed = tuple(bool(h) for h in hashed)
        groups, start = [], 0
        for level in range(1, len(res) + 1):
            if level == len(res) or hashed[level] != hashed[start]:
                groups.append((start, level, hashed[start]))
                start = level
        small = max(size) <= (1 << 29) and off[-1] + size[-1] < (1 << 31)
        fits = all(
            (r + 1) * (sz - 1) < (1 << 31) if h else (r + 1) ** n_input_dims < (1 << 31)
            for r, sz, h in zip(res, size, hashed))
        return cls(tuple(groups), res, size, off, small, small and fits)


@functools.lru_cache(maxsize=64)
def _group_constants(plan: IndexPlan, d: int, device: str) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per group: (D, Lg) axis multipliers (hash prime mod size, or dense stride), (Lg,) sizes and offsets."""
    dtype = torch.int32 if plan.int32_math else torch.int64
    out = []
    for start, stop, hashed in plan.groups:
        res, size = plan.resolutions[start:stop], plan.sizes[start:stop]
        if hashed:
            mult = [[(PRIMES[k] & _U32) % sz for sz in size] for k in range(d)]
        else:
            mult = [[r**k for r in res] for k in range(d)]
        out.append(tuple(torch.tensor(v, dtype=dtype, device=device)
                         for v in (mult, size, plan.offsets[start:stop])))
    return out


def _corner_view(t: Tensor, k: int, d: int) -> Tensor:
    """View (2, L, N) values of corner bit k as (1.., 2, 1.., L, N).

    Broadcasting over the axes builds the corner cube laid out [bit_{d-1}, ..., bit_0] (corner c = sum_k
    bit_k << k) in front of (L, N).
    """
    return t.view([1] * (d - 1 - k) + [2] + [1] * k + list(t.shape[1:]))


def hashgrid_indices(x: Tensor, scales: Tensor, resolutions: Tensor, sizes: Tensor, offsets: Tensor,
                     hashed: Tensor, plan: IndexPlan | None = None) -> tuple[Tensor, Tensor]:
    """Flat table entries and multilinear weights of every corner of every level.

    Computed per axis and combined by broadcasting (2^D corners never materialise D coordinates each).

    Args:
        x: (N, D) float32 positions in [0, 1].
        scales, resolutions, sizes, offsets, hashed: (L,) per-level layout tensors on x's device
            (float32 scales, int64 resolutions/sizes/offsets, bool hashed).
        plan: the same layout on the host (`HashGrid` keeps one); None reads it from the tensors, which on
            CUDA waits for the device.

    Returns:
        idx: (N, L, 2^D) entry indices (int32 when they fit, else int64) into the flat table viewed as
            (entries, F);
            corner c has offset bit k on axis k.
        weights: (N, L, 2^D) interpolation weights (differentiable w.r.t. x).
    """
    n, d = x.shape
    if plan is None:
        plan = IndexPlan.from_layout(resolutions.tolist(), sizes.tolist(), offsets.tolist(), hashed.tolist(),
                                     d)
    n_levels = scales.shape[0]
    # Point-minor layout (…, L, N): every elementwise op runs over N contiguous values (corner-minor
    # (N, L, 2^D) tensors made inner loops of length 2); one permute at the end gives (N, L, 2^D).
    pos = scales[:, None, None] * x.t()[None] + 0.5              # (L, D, N)
    cell_f = torch.floor(pos)
    frac = pos - cell_f
    math_dtype = torch.int32 if plan.int32_math else torch.int64
    idx_dtype = torch.int32 if plan.small else torch.int64
    cell = cell_f.to(math_dtype)
    idx = torch.empty((1 << d, n_levels, n), dtype=idx_dtype, device=x.device)
    for (start, stop, use_hash), (mult, size, offset) in zip(
            plan.groups, _group_constants(plan, d, str(x.device))):
        c = cell[start:stop]                                      # (Lg, D, N)
        acc = None
        for k in range(d):
            lo = c[:, k] if PRIMES[k] == 1 and use_hash else c[:, k] * mult[k][:, None]
            step = 1 if PRIMES[k] == 1 and use_hash else mult[k][:, None]
            comp = torch.stack([lo, lo + step])                   # (2, Lg, N): corner bit k = 0, 1
            if use_hash:
                # coherent-prime hash in uint32 wrap-around, then % size (a power of two): masking each term
                # is the same as masking the XOR, and (c·P) % size = (c·(P % size)) % size keeps int32 exact
                if not plan.int32_math and PRIMES[k] != 1:
                    comp = comp & _U32
                comp = _corner_view(comp & (size - 1)[:, None], k, d)
                acc = comp if acc is None else acc ^ comp
            else:
                # dense x + y*res + z*res^2 (uint32), then % size
                comp = _corner_view(comp, k, d)
                acc = comp if acc is None else acc + comp
        acc = acc.reshape(1 << d, stop - start, n)
        if not use_hash:
            # dense levels have res^D <= size, so the raw index (coordinates up to res) is < 2 * size and one
            # conditional subtraction is the modulo
            if not plan.small:
                acc = acc & _U32
            sz = size[:, None]
            acc = torch.where(acc >= sz, acc - sz, acc)
        idx[:, start:stop] = acc + offset[:, None]
    w_axis = torch.stack([1.0 - frac, frac])                     # (2, L, D, N)
    w = None
    for k in range(d):
        comp = _corner_view(w_axis[:, :, k], k, d)
        w = comp if w is None else w * comp
    w = w.reshape(1 << d, n_levels, n)
    return idx.permute(2, 1, 0).contiguous(), w.permute(2, 1, 0).contiguous()


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
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(table, idx, w)
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: Tensor):
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
        lv = self.levels
        self._plan = IndexPlan.from_layout([v.resolution for v in lv], [v.size for v in lv],
                                           [v.offset for v in lv], [v.hashed for v in lv], n_input_dims)
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
        idx, w = hashgrid_indices(x, self._scales, self._res, self._sizes, self._offsets, self._hashed,
                                  self._plan)
        table = self.params.view(-1, self.n_features_per_level)
        out = _WeightedGather.apply(table, idx.view(n * self.n_levels, -1), w.view(n * self.n_levels, -1))
        return out.reshape(n, self.n_output_dims)                                       # (N, L*F)

    def extra_repr(self) -> str:
        return (f"D={self.n_input_dims}, L={self.n_levels}, F={self.n_features_per_level}, "
                f"T={self.log2_hashmap_size}, base={self.base_resolution}, "
                f"per_level_scale={self.per_level_scale:.6g}, params={self.params.numel()}, "
                f"backend={self.backend}")
