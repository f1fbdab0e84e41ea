"""GPU readiness: the GPU check's dry run on the CPU, and the step loop's host-sync savings are exact."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from paths import REPO

from engine.guidance import PromptEmbeddings


def test_gpu_check_dry_run_writes_every_section_to_its_table_and_json(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_BUDGET_S": "400"}
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run", str(tmp_path / "no-wheels"), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["dry_run"] is True and not data["skipped"] and not data["errors"]
    assert {r["section"] for r in data["rows"]} == {"texture", "sd21", "if", "generate", "edit"}
    texture = {(r["batch"], r["variant"]): r for r in data["rows"] if r["section"] == "texture"}
    assert set(texture) == {(1, "eager"), (4, "eager"), (1, "tiny VAE"), (1, "compile")}
    assert texture[1, "compile"]["compile"] == "on" and texture[1, "tiny VAE"]["compile"] == "off"
    for r in texture.values():
        assert r["ms_step"] > 0 and r["fwd_ms"] > 0 and r["ratio"] == r["ms_step"] / r["fwd_ms"]
        assert r["unet_batch"] in (2 * r["batch"], 3 * r["batch"])  # (cond, null[, neg]) × B in one call
        assert all(
            r[k] >= 0 for k in ("render_ms", "encode_ms", "guidance_ms", "backward_ms", "optimiser_ms")
        )
    assert {
        r["stage"] if "stage" in r else r["case"].split()[1]
        for r in data["rows"]
        if r["section"] == "generate"
    } == {"coarse", "refine"}
    assert {r["axis"] for r in data["scaling"]} == {"faces", "texture", "batch"}
    summary = data["tests"]["summary"]  # skipped on a CPU, passed on a CUDA machine
    assert data["tests"]["returncode"] == 0 and ("skipped" in summary or "passed" in summary)
    md = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in md and md.count("| texture, SD 1.5 + depth CN") == 4 and "TAESD-arch encoder" in md
    assert "| case | B | compile | ms/step |" in proc.stdout  # the table is printed too


def test_neg_is_null_is_compared_once_and_with_cond_keeps_the_answer(monkeypatch):
    null, neg = torch.zeros(1, 4, 8), torch.ones(1, 4, 8)
    calls = []
    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: calls.append(1) or real_equal(a, b))
    p = PromptEmbeddings(cond=torch.randn(1, 4, 8), null=null, neg=neg)
    assert p.neg_is_null() is False and p.neg_is_null() is False and len(calls) == 1
    q = p.with_cond(torch.randn(2, 4, 8))
    assert q.neg_is_null() is False and len(calls) == 1 and q.cond.shape[0] == 2
    same = PromptEmbeddings(cond=null, null=null, neg=null.clone())
    assert same.neg_is_null() is True and len(calls) == 2
    # dataclasses.replace of the negative recomputes instead of trusting a stale answer
    assert dataclasses.replace(same, neg=neg).neg_is_null() is False and len(calls) == 3


def test_hash_grid_int32_corner_arithmetic_gives_the_int64_indices():
    from engine.fields.hashgrid import HashGrid, IndexPlan, hashgrid_indices

    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0))
    x[:8] = torch.tensor([0.0, 1.0]).repeat(12)[:24].view(8, 3)  # the cube's corners: the largest coordinates
    for log2_size, max_res in ((15, 256), (19, 2048)):
        grid = HashGrid(3, 12, 2, log2_size, 16, (max_res / 16) ** (1 / 11), backend="torch")
        plan = grid._plan
        assert plan.int32_math and plan.groups[0][2] is False and plan.groups[-1][2] is True
        layout = (grid._scales, grid._res, grid._sizes, grid._offsets, grid._hashed)
        fast, w_fast = hashgrid_indices(x, *layout, plan)
        wide, w_wide = hashgrid_indices(x, *layout, dataclasses.replace(plan, int32_math=False))
        assert fast.dtype == wide.dtype == torch.int32
        assert torch.equal(fast, wide) and torch.equal(w_fast, w_wide)
        assert torch.equal(hashgrid_indices(x, *layout)[0], fast)  # the plan read back from the tensors
    # 4096 vertices per axis at T = 19: corner × (prime mod 2^19) can pass 2^31, so the plan keeps int64 math
    wide_grid = HashGrid(3, 16, 2, 19, 16, (4096 / 16) ** (1 / 15), backend="torch")
    assert wide_grid._plan.small and not wide_grid._plan.int32_math
    assert IndexPlan.from_layout([4097], [1 << 19], [0], [True], 3).int32_math is False


def test_shade_field_with_one_visibility_read_matches_masked_assignment():
    from engine.render.surface import SurfaceHits, shade_field

    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 5, 6, generator=g) > 0.5
    points = torch.rand(2, 5, 6, 3, generator=g) * mask[..., None]
    background = torch.rand(2, 3, generator=g)
    weight = torch.randn(3, 3, generator=g, requires_grad=True)
    hits = SurfaceHits(rast=torch.zeros(2, 5, 6, 4), mask=mask, points=points)
    image = shade_field(lambda p: torch.sigmoid(p @ weight), hits, background)
    expected = background[:, None, None, :].expand(2, 5, 6, 3).clone()
    expected[mask] = torch.sigmoid(points[mask] @ weight)
    assert torch.equal(image, expected)
    (grad,) = torch.autograd.grad(image.square().sum(), weight)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), weight)
    torch.testing.assert_close(grad, grad_expected)
    empty = SurfaceHits(rast=hits.rast, mask=torch.zeros_like(mask), points=points)
    blank = shade_field(lambda p: torch.sigmoid(p @ weight), empty, background)
    assert not blank.requires_grad and torch.equal(blank, background[:, None, None, :].expand(2, 5, 6, 3))


def test_a_tiny_vae_encodes_renders_instead_of_the_vae(tmp_path, monkeypatch):
    from engine.errors import RequestError
    from engine.priors import load_prior
    from engine.testing.tiny_models import save_tiny_sd, save_tiny_taesd

    sd, taesd = save_tiny_sd(tmp_path / "sd"), save_tiny_taesd(tmp_path / "taesd")
    full = load_prior(str(sd), cache_dir=tmp_path / "cache")
    fast = load_prior(str(sd), cache_dir=tmp_path / "cache", tiny_vae=str(taesd))
    assert fast is not full and fast.encoder is not None and full.encoder is None
    rgb = torch.rand(2, 3, fast.resolution, fast.resolution, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(fast.vae, "encode", lambda *a, **k: pytest.fail("the full VAE encoded the render"))
    x = rgb.clone().requires_grad_()
    z = fast.to_model_space(x)
    assert z.shape == full.to_model_space(rgb).shape and z.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(z, fast.encoder.encode(rgb * 2 - 1).latents)
    z.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(RequestError, match="pixel prior"):
        load_prior("toy", tiny_vae=str(taesd))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_texture_job_with_a_controlnet_and_a_tiny_vae_runs_on_cuda_in_fp16(tmp_path):
    import trimesh

    from csd_blender.protocol.params import TextureParams
    from engine.priors import load_prior
    from engine.tasks.texture import make_texture_job, run_texture
    from engine.testing.tiny_models import save_tiny_controlnet, save_tiny_sd, save_tiny_taesd

    sd = save_tiny_sd(tmp_path / "sd")
    cn, taesd = save_tiny_controlnet(sd, tmp_path / "cn"), save_tiny_taesd(tmp_path / "taesd")
    m = trimesh.creation.icosphere(subdivisions=3)
    arrays = {"vertices": m.vertices.astype(np.float32), "faces": m.faces.astype(np.int32)}
    for tiny_vae in (None, str(taesd)):
        prior = load_prior(
            str(sd),
            device="cuda",
            controlnets=[f"depth={cn}"],
            cache_dir=tmp_path / "cache",
            tiny_vae=tiny_vae,
        )
        assert prior.dtype == torch.float16 and prior.controlnets == ("depth",)
        p = TextureParams(
            prompt="a red sphere", steps=3, batch_size=2, texture_size=64, device="cuda", progress_every=3
        )
        result = run_texture(make_texture_job(p, arrays), prior=prior, profile=True)
        assert result.stats["device"].startswith("cuda") and result.stats["steps_run"] == 3
        assert np.isfinite(result.texture).all() and result.stats["loop_seconds"] > 0
        assert all(v >= 0 for v in result.stats["seconds_per_stage"].values())
