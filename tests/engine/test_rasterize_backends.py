"""Rasterizer backends on CUDA (marked gpu, skipped without it): the torch backend and its antialias match the
CPU, and the torch backend matches nvdiffrast (rasterization and antialias coverage)."""
from __future__ import annotations

import pytest
import torch
from raster_scenes import TRI, cube_view, random_scene

from engine import _optional
from engine.render.rasterize import antialias, interpolate, rasterize


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_cuda_matches_cpu():
    pos, tri = random_scene(50, seed=8)
    cpu = rasterize(pos.float(), tri, (64, 48), backend="torch")
    gpu = rasterize(pos.float().cuda(), tri.cuda(), (64, 48), backend="torch").cpu()
    assert (cpu[..., 3] == gpu[..., 3]).float().mean() >= 0.999
    same = cpu[..., 3] == gpu[..., 3]
    torch.testing.assert_close(cpu[same], gpu[same], atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(_optional.nvdiffrast() is None, reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_parity():
    pos, tri = random_scene(200, seed=9)
    pos = pos.float().cuda()
    tri = tri.cuda()
    ours = rasterize(pos, tri, (128, 96), backend="torch")
    theirs = rasterize(pos, tri, (128, 96), backend="nvdiffrast")
    same = ours[..., 3] == theirs[..., 3]
    assert same.float().mean() >= 0.98
    torch.testing.assert_close(ours[same], theirs[same], atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_antialias_on_cuda_matches_cpu():
    v, faces, pos = cube_view()
    pos, v = pos.float(), v.float()
    rast = rasterize(pos, faces, (40, 40), backend="torch")
    colour = interpolate(v + 0.5, rast, faces)
    cpu = antialias(colour, rast, pos, faces, backend="torch")
    gpu = antialias(colour.cuda(), rast.cuda(), pos.cuda(), faces.cuda(), backend="torch").cpu()
    torch.testing.assert_close(cpu, gpu, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(_optional.nvdiffrast() is None, reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_antialias_coverage_parity():
    pos = torch.tensor([[-0.71, -0.63, 0.1, 1.0], [0.77, -0.21, 0.1, 1.0], [-0.12, 0.83, 0.1, 1.0]]).cuda()
    rast = rasterize(pos, TRI.cuda(), (64, 64), backend="nvdiffrast")
    mask = (rast[..., 3:] > 0).float()
    ours = antialias(mask, rast, pos, TRI.cuda(), backend="torch")
    theirs = antialias(mask, rast, pos, TRI.cuda(), backend="nvdiffrast")
    assert abs(float(ours.sum()) - float(theirs.sum())) <= 0.01 * float(theirs.sum())
    assert ((ours - theirs).abs() > 0.05).float().mean() <= 0.02
