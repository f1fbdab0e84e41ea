"""HashGrid vs tiny-cuda-nn's formulas: a per-point Python reference, hand-computed indices, counts, grads."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine import _optional
from engine.fields.hashgrid import HashGrid, level_layout, n_hashgrid_params

P1, P2 = 2654435761, 805459861


def _reference(grid: HashGrid, x: np.ndarray) -> np.ndarray:
    """Slow per-point, per-level, per-corner loop written straight from the tcnn formulas."""
    params = grid.params.detach().double().numpy()
    F, D = grid.n_features_per_level, grid.n_input_dims
    log2_pls = np.float32(np.log2(np.float32(grid.per_level_scale)))
    out = np.zeros((x.shape[0], grid.n_levels * F))
    offset = 0
    for level in range(grid.n_levels):
        growth = np.float32(np.exp2(np.float32(level * log2_pls)))
        scale = np.float32(growth * np.float32(grid.base_resolution)) - np.float32(1)
        res = math.ceil(float(scale)) + 1
        size = min(((res**D + 7) // 8) * 8, 2**grid.log2_hashmap_size)
        use_hash = res**D > size
        for i in range(x.shape[0]):
            pos = [np.float32(np.float32(x[i, d]) * scale) + np.float32(0.5) for d in range(D)]
            cell = [math.floor(p) for p in pos]
            frac = [float(p) - c for p, c in zip(pos, cell)]
            for corner in range(2**D):
                c = [cell[d] + ((corner >> d) & 1) for d in range(D)]
                w = 1.0
                for d in range(D):
                    w *= frac[d] if (corner >> d) & 1 else 1.0 - frac[d]
                if use_hash:
                    h = (c[0] * 1) % 2**32
                    if D > 1:
                        h ^= (c[1] * P1) % 2**32
                    if D > 2:
                        h ^= (c[2] * P2) % 2**32
                    index = h % size
                else:
                    index = sum(c[d] * res**d for d in range(D)) % 2**32 % size
                for f in range(F):
                    out[i, level * F + f] += w * params[(offset + index) * F + f]
        offset += size
    return out


def test_matches_reference_on_dense_and_hashed_levels():
    torch.manual_seed(0)
    grid = HashGrid(3, n_levels=6, n_features_per_level=2, log2_hashmap_size=12, base_resolution=4,
                    per_level_scale=1.9, backend="torch")
    kinds = [lv.hashed for lv in grid.levels]
    assert False in kinds and True in kinds, kinds
    with torch.no_grad():
        grid.params.uniform_(-1, 1)          # large values so mistakes show up
    x = torch.rand(64, 3)
    x[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0], [1.0, 0.0, 0.3]])
    got = grid(x).detach().double().numpy()
    np.testing.assert_allclose(got, _reference(grid, x.numpy()), atol=1e-6, rtol=0)


def test_matches_reference_2d_and_odd_features():
    torch.manual_seed(1)
    grid = HashGrid(2, n_levels=5, n_features_per_level=3, log2_hashmap_size=9, base_resolution=8,
                    per_level_scale=2.0, backend="torch")
    assert {lv.hashed for lv in grid.levels} == {False, True}
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    x = torch.rand(50, 2)
    got = grid(x).detach().double().numpy()
    np.testing.assert_allclose(got, _reference(grid, x.numpy()), atol=1e-6, rtol=0)


def test_hand_computed_indices():
    grid = HashGrid(3, n_levels=2, n_features_per_level=1, log2_hashmap_size=10, base_resolution=5,
                    per_level_scale=4.0, backend="torch")
    # level 0: scale 4, res 5, 125 -> 128 entries, dense.  level 1: scale 19, res 20, 8000 > 1024, hashed.
    l0, l1 = grid.levels
    assert (l0.scale, l0.resolution, l0.size, l0.offset, l0.hashed) == (4.0, 5, 128, 0, False)
    assert (l1.scale, l1.resolution, l1.size, l1.offset, l1.hashed) == (19.0, 20, 1024, 128, True)
    # x = (0.3, 0.55, 0.8): level 0 pos = (1.7, 2.7, 3.7) -> cell (1, 2, 3), frac 0.7 each.
    # corner (1,2,3): 1 + 2*5 + 3*25 = 86; corner (2,3,4): 2 + 15 + 100 = 117.
    # level 1 pos = (6.2, 10.95, 15.7) -> cell (6, 10, 15); corner (6,10,15):
    # 6 ^ (10*2654435761 mod 2^32) ^ (15*805459861 mod 2^32) = 6 ^ 774553834 ^ 3491963323 = 4262060375,
    # % 1024 = 343 (the other seven corners hash to 342, 806, 807, 444, 445, 973, 972: no collision).
    h = 343
    table = torch.zeros(grid.params.numel())
    table[86] = 1.0                 # level 0, corner (0,0,0) of the cell
    table[117] = 10.0               # level 0, corner (1,1,1)
    table[128 + h] = 100.0          # level 1, corner (0,0,0)
    with torch.no_grad():
        grid.params.copy_(table)
    out = grid(torch.tensor([[0.3, 0.55, 0.8]])).detach().double().numpy()[0]
    w000_l0 = 0.3**3
    w111_l0 = 0.7**3
    fx, fy, fz = 6.2 - 6, 10.95 - 10, 15.7 - 15
    w000_l1 = (1 - fx) * (1 - fy) * (1 - fz)
    assert out[0] == pytest.approx(w000_l0 * 1 + w111_l0 * 10, abs=1e-5)
    assert out[1] == pytest.approx(100 * w000_l1, abs=1e-4)


@pytest.mark.parametrize("levels,scale,expected", [
    (16, 1.447269237440378, 12_599_920),   # threestudio default / csd.yaml (max res 4096)
    (12, 1.3703509847201236, 7_848_208),   # csd-if.yaml (max res 512)
    (16, 1.381912879967776, 12_196_240),   # csd-if-object.yaml (max res 2048)
])
def test_param_counts_match_tcnn_table(levels, scale, expected):
    assert n_hashgrid_params(3, levels, 2, 19, 16, scale) == expected
    layout = level_layout(3, levels, 19, 16, scale)
    assert layout[-1].resolution == {16: 4096 if scale > 1.4 else 2048, 12: 512}[levels]
    assert [lv.hashed for lv in layout[:5]] == [False] * 5 and layout[-1].hashed


def test_allocated_param_count_default():
    grid = HashGrid()            # threestudio default config
    assert grid.params.numel() == 12_599_920
    assert grid.params.abs().max().item() <= 1e-4
    assert grid(torch.rand(7, 3)).shape == (7, 32)


def test_gradients_reach_the_table_and_inputs():
    torch.manual_seed(0)
    grid = HashGrid(3, 4, 2, 10, 4, 2.0, backend="torch")
    x = torch.rand(32, 3, requires_grad=True)
    grid(x).square().sum().backward()
    g = grid.params.grad
    assert g is not None and g.shape == grid.params.shape
    assert int((g != 0).sum()) > 0
    # finite-difference check of one touched table entry
    i = int(torch.nonzero(g)[0])
    with torch.no_grad():
        eps = 1e-2
        grid.params[i] += eps
        up = grid(x).double().square().sum().item()
        grid.params[i] -= 2 * eps
        down = grid(x).double().square().sum().item()
        grid.params[i] += eps
    assert g[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-2, abs=1e-6)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_chunking_is_transparent():
    grid = HashGrid(3, 4, 2, 10, 4, 2.0, backend="torch", chunk_size=100)
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    x = torch.rand(1000, 3)
    full = HashGrid(3, 4, 2, 10, 4, 2.0, backend="torch")
    full.load_state_dict(grid.state_dict())
    assert torch.equal(grid(x), full(x))
    assert list(grid.state_dict()) == ["params"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        HashGrid(backend="cuda")
    with pytest.raises(ValueError, match="per_level_scale"):
        HashGrid(per_level_scale=0.5)
    with pytest.raises(ValueError, match="x: expected shape"):
        HashGrid(3, 2, 2, 8, 4, 2.0)(torch.rand(5, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_torch_backend_matches_cpu():
    grid = HashGrid(3, 8, 2, 14, 16, 1.5, backend="torch")
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    x = torch.rand(4096, 3)
    cpu = grid(x)
    gpu = grid.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(_optional.tinycudann() is None, reason="needs tinycudann and CUDA")
def test_tcnn_parity():
    torch.manual_seed(0)
    ref = HashGrid(3, 16, 2, 19, 16, 1.447269237440378, backend="torch").cuda()
    with torch.no_grad():
        ref.params.uniform_(-1, 1)
    tc = HashGrid(3, 16, 2, 19, 16, 1.447269237440378, backend="tcnn").cuda()
    tc.load_state_dict(ref.state_dict())
    x = torch.rand(1 << 14, 3, device="cuda")
    torch.testing.assert_close(tc(x), ref(x), atol=1e-4, rtol=1e-3)


def _ref_index(level, corner, d):
    """Entry index of one integer corner on one LevelInfo, from the formulas (no table needed)."""
    if level.hashed:
        h = 0
        for k, prime in enumerate((1, P1, P2)[:d]):
            h ^= (corner[k] * prime) % 2**32
        return level.offset + h % level.size
    return level.offset + sum(corner[k] * level.resolution**k for k in range(d)) % 2**32 % level.size


@pytest.mark.parametrize("log2_size", [14, 30])    # int32 and int64 index paths; nothing is allocated
def test_indices_without_a_table(log2_size):
    from engine.fields.hashgrid import hashgrid_indices

    layout = level_layout(3, 8, log2_size, 16, 2.0)
    t = lambda attr, dtype: torch.tensor([getattr(lv, attr) for lv in layout], dtype=dtype)
    x = torch.rand(40, 3)
    x[0] = 1.0
    idx, w = hashgrid_indices(x, t("scale", torch.float32), t("resolution", torch.int64),
                              t("size", torch.int64), t("offset", torch.int64), t("hashed", torch.bool))
    assert idx.dtype == (torch.int32 if log2_size < 30 else torch.int64)
    torch.testing.assert_close(w.sum(-1), torch.ones(40, 8))
    for i in range(0, 40, 3):
        for li, lv in enumerate(layout):
            pos = [np.float32(x[i, k].item()) * np.float32(lv.scale) + np.float32(0.5) for k in range(3)]
            cell = [math.floor(p) for p in pos]
            for c in range(8):
                corner = [cell[k] + ((c >> k) & 1) for k in range(3)]
                assert int(idx[i, li, c]) == _ref_index(lv, corner, 3)


def test_input_gradient_matches_plain_autograd():
    from engine.fields.hashgrid import hashgrid_indices

    torch.manual_seed(3)
    grid = HashGrid(3, 5, 2, 11, 4, 2.0, backend="torch")
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    x = (torch.rand(64, 3) * 0.98 + 0.01).requires_grad_()
    g = torch.randn(64, 10)
    (grid(x) * g).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    idx, w = hashgrid_indices(x2, grid._scales, grid._res, grid._sizes, grid._offsets, grid._hashed)
    ref = (grid.params.detach().view(-1, 2)[idx.long()] * w[..., None]).sum(2).reshape(64, 10)
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_scatter_paths_agree(dtype):
    from engine.fields.hashgrid import scatter_table_grad

    torch.manual_seed(0)
    idx = torch.randint(0, 50, (300, 8), dtype=dtype)
    w, g = torch.rand(300, 8), torch.randn(300, 3)
    a = scatter_table_grad(50, idx, w, g, use_index_add=True)      # the CUDA path, run on CPU
    b = scatter_table_grad(50, idx, w, g, use_index_add=False)
    ref = torch.zeros(50, 3)
    for m in range(300):
        for c in range(8):
            ref[idx[m, c]] += w[m, c] * g[m]
    torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-5)
