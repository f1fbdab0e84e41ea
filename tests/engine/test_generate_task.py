"""Text to mesh on the toy prior (CPU): parameters, determinism, cancel, CLI, plain-statistics quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from paths import REPO
from texture_stats import in_family, mean_hue, object_mask

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import GenerateParams
from engine.errors import CancelledError
from engine.mesh import Mesh, normalize
from engine.mesh.cleanup import non_manifold_edges
from engine.render.surface import hit_surface
from engine.tasks.common.turntable import mesh_turntable
from engine.tasks.common.views import fixed_views
from engine.tasks.generate import make_generate_job, run_generate

TINY = dict(
    steps_coarse=6,
    steps_refine=3,
    tet_resolution=12,
    texture_size=64,
    samples_per_ray=16,
    face_budget=600,
    progress_every=1,
    preview_size=32,
    device="cpu",
)


def _params(**kw) -> GenerateParams:
    return GenerateParams(**{"prompt": "a red cube", **TINY, **kw})


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("prompt", "", ErrorCode.BAD_PROMPT),
        ("refine", "smooth", ErrorCode.BAD_REQUEST),
        ("steps_coarse", 0, ErrorCode.BAD_REQUEST),
        ("steps_refine", -1, ErrorCode.BAD_REQUEST),
        ("face_budget", 10, ErrorCode.BAD_REQUEST),
        ("tet_resolution", 1000, ErrorCode.BAD_REQUEST),
        ("isosurface_threshold", float("nan"), ErrorCode.BAD_REQUEST),
        ("size", 0.0, ErrorCode.BAD_REQUEST),
        ("quality", "ultra", ErrorCode.BAD_REQUEST),
        ("device", "tpu", ErrorCode.BAD_REQUEST),
    ],
)
def test_params_validation_names_the_field(field, value, code):
    with pytest.raises(ProtocolError) as info:
        _params(**{field: value}).validate()
    assert info.value.code == code and info.value.field == field


def test_params_round_trip_and_reject_arrays():
    p = _params()
    assert GenerateParams.from_dict(p.to_dict()) == p
    with pytest.raises(ProtocolError) as info:
        GenerateParams.from_dict({"prompt": "a cube", "colour": "red"})
    assert info.value.field == "colour"
    with pytest.raises(ProtocolError) as info:
        make_generate_job(p, {"vertices": np.zeros((3, 3), np.float32)})
    assert info.value.field == "vertices"


def _run(**kw):
    events = []
    result = run_generate(make_generate_job(_params(**kw), {}), progress=events.append)
    return result, events


def test_tiny_run_stages_progress_determinism_and_output():
    a, events = _run()
    b, _ = _run()
    stages = [e.stage for e in events]
    assert stages[0] == "loading" and stages[-1] == "done" and "baking" in stages
    for stage, total in (("coarse", 6), ("refine", 3)):
        steps = [e.step for e in events if e.stage == stage and e.step > 0]
        assert steps == list(range(1, total + 1)), (stage, steps)
        assert all(e.preview_png for e in events if e.stage == stage and e.step > 0)
    # same seed on the CPU: identical mesh and texture
    assert a.stats["mesh_sha256"] == b.stats["mesh_sha256"]
    assert a.stats["texture_sha256"] == b.stats["texture_sha256"]
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices) and np.array_equal(a.texture, b.texture)
    c, _ = _run(seed=1)
    assert c.stats["texture_sha256"] != a.stats["texture_sha256"]
    # one mesh, under the budget, centred with its longest side = size, UVs for every face
    m = a.mesh
    assert 0 < len(m.faces) <= 600 and m.uvs.shape == (len(m.faces), 3, 2)
    extent = m.vertices.max(0) - m.vertices.min(0)
    assert (
        abs(float(extent.max()) - 1.0) < 1e-5 and np.abs(m.vertices.max(0) + m.vertices.min(0)).max() < 1e-5
    )
    assert a.stats["non_manifold_edges"] == non_manifold_edges(m)
    parts = trimesh.Trimesh(m.vertices, m.faces, process=True).split(only_watertight=False)
    assert len(parts) == 1  # one connected mesh
    assert a.params["steps_coarse"] == 6 and a.params["isosurface_threshold"] == 1.0
    assert a.stats["samples_per_ray"][1] < a.stats["samples_per_ray"][0]  # the occupancy grid culls


@pytest.mark.parametrize("refine", ["texture", "none"])
def test_refine_modes(refine):
    result, events = _run(refine=refine)
    assert len(result.mesh.faces) > 0 and result.texture.shape == (64, 64, 3)
    refine_steps = [e.step for e in events if e.stage == "refine" and e.step > 0]
    assert refine_steps == ([] if refine == "none" else [1, 2, 3])


@pytest.mark.parametrize("stage, stop_after", [("coarse", 3), ("refine", 6 + 2)])
def test_cancel_takes_effect_within_one_step_of_either_stage(stage, stop_after):
    calls, events = [0], []

    def stop():
        calls[0] += 1
        return calls[0] > stop_after

    with pytest.raises(CancelledError) as info:
        run_generate(make_generate_job(_params(), {}), progress=events.append, should_stop=stop)
    assert stage in str(info.value)
    done = [e.step for e in events if e.stage == stage and e.step > 0]
    assert done and done[-1] == stop_after - (6 if stage == "refine" else 0)
    assert not any(e.stage == "baking" for e in events)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_cli_writes_the_texture_tasks_files(tmp_path):
    out = tmp_path / "out"
    proc = _cli(
        "generate",
        "--prompt",
        "a blue sphere",
        "--out",
        str(out),
        "--steps-coarse",
        "4",
        "--steps-refine",
        "2",
        "--tet-resolution",
        "12",
        "--texture-size",
        "64",
        "--face-budget",
        "600",
        "--device",
        "cpu",
        "--quiet",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for name in (
        "generated.glb",
        "generated.obj",
        "generated.mtl",
        "texture.png",
        "turntable.png",
        "job.json",
    ):
        assert (out / name).stat().st_size > 0, name
    job = json.loads((out / "job.json").read_text())
    assert job["task"] == "generate" and job["params"]["steps_coarse"] == 4
    assert job["command"].startswith("python -m engine generate") and "--seed 0" in job["command"]
    scene = trimesh.load(out / "generated.glb")
    geom = next(iter(scene.geometry.values()))
    assert geom.visual.material.baseColorTexture.size == (64, 64) and len(geom.faces) <= 600


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--prompt", ""], "prompt"),
        (["--prompt", "a red cube", "--face-budget", "5"], "face_budget"),
        (["--prompt", "a red cube", "--steps-coarse", "0"], "steps_coarse"),
        (["--prompt", "a teapot"], "teapot"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, args, needle):
    proc = _cli("generate", "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


# --- quality on the toy prior (plain image statistics) ------------------------------------------------------

QUALITY = dict(
    steps_coarse=120,
    steps_refine=40,
    tet_resolution=24,
    texture_size=128,
    face_budget=4000,
    progress_every=40,
    device="cpu",
)


def _silhouettes(mesh: Mesh, size: int = 64) -> np.ndarray:
    """(8, size, size) bool masks of the normalised mesh from the turntable cameras."""
    mesh_n, _ = normalize(mesh)
    cams = fixed_views(8, size)
    with torch.no_grad():
        hits = hit_surface(cams, torch.tensor(mesh_n.vertices), torch.tensor(mesh_n.faces, dtype=torch.int32))
    return hits.mask.numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _reference(shape: str) -> Mesh:
    tm = trimesh.creation.box((1, 1, 1)) if shape == "cube" else trimesh.creation.icosphere(subdivisions=3)
    return Mesh(np.asarray(tm.vertices, np.float32), np.asarray(tm.faces, np.int64))


@pytest.mark.slow
@pytest.mark.parametrize("colour", ["red", "blue"])
@pytest.mark.parametrize("shape", ["cube", "sphere"])
def test_a_colour_shape_prompt_gives_one_mesh_in_that_colour(colour, shape):
    result = run_generate(make_generate_job(GenerateParams(prompt=f"a {colour} {shape}", **QUALITY), {}))
    m = result.mesh
    assert 0 < len(m.faces) <= QUALITY["face_budget"]
    assert len(trimesh.Trimesh(m.vertices, m.faces, process=True).split(only_watertight=False)) == 1
    assert np.abs(m.vertices).max() <= 0.5 + 1e-5  # inside the bound (size 1, centred)
    assert "non_manifold_edges" in result.stats
    views = mesh_turntable(m, result.texture, m.uvs, size=96)
    coloured, areas = 0, []
    for img in views:
        mask = object_mask(img)
        areas.append(mask.mean())
        if mask.sum() > 20:
            coloured += in_family(*mean_hue(img, mask), colour)
    assert coloured >= 6, (coloured, result.stats)
    assert all(0.05 <= a <= 0.70 for a in areas), areas


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the bundled toy prior does not steer shape yet (2026-11-26: 'a cube' IoU 0.46 "
    "with a cube, 0.80 with a sphere; a 10k-step retrain: 0.33 vs 0.62); drop this mark when it passes",
)
def test_shape_follows_the_prompt():
    """ "a cube" matches a reference cube better than a sphere and "a sphere" the reverse (8-view silhouette
    IoU).
    Needs a toy prior that has learnt shapes well (the retrained prior of its own issue)."""
    refs = {s: _silhouettes(_reference(s)) for s in ("cube", "sphere")}
    for shape, other in (("cube", "sphere"), ("sphere", "cube")):
        result = run_generate(make_generate_job(GenerateParams(prompt=f"a {shape}", **QUALITY), {}))
        sil = _silhouettes(result.mesh)
        own, wrong = _iou(sil, refs[shape]), _iou(sil, refs[other])
        assert own > wrong, (shape, own, wrong)


def test_real_prior_path_if_coarse_with_perp_neg_and_latent_refine(tmp_path, monkeypatch):
    """Tiny random IF (pixel) and SD (latent) folders: view-interpolated prompts with Perp-Neg in the coarse
    stage
    (one UNet call of 5B per step), csd-sd-refine with view prompts through the VAE in the refine stage."""
    from engine.priors import load_prior
    from engine.testing.tiny_models import save_tiny_if, save_tiny_sd

    if_dir, sd_dir = save_tiny_if(tmp_path / "if"), save_tiny_sd(tmp_path / "sd")
    coarse_prior = load_prior(str(if_dir), device="cpu")
    batches = []
    original = type(coarse_prior).predict_noise

    def counting(self, x_t, t, embeddings, control=None):
        batches.append((self.family, x_t.shape[0]))
        return original(self, x_t, t, embeddings, control)

    monkeypatch.setattr(type(coarse_prior), "predict_noise", counting)
    params = _params(
        prompt="a red sphere",
        negative_prompt="ugly, noisy",
        model=str(if_dir),
        refine_model=str(sd_dir),
        steps_coarse=3,
        steps_refine=2,
        batch_size=2,
        isosurface_threshold=2.0,
    )  # 3 steps: no density of 10 yet
    result = run_generate(make_generate_job(params, {}))
    assert result.stats["guidance_presets"] == ["csd-if", "csd-sd-refine"]
    coarse_calls = [n for fam, n in batches if fam == "if"]
    # one call per step: 5 branches × batch 2 (cond, y_neg, ∅, two view negatives) while ω2 < 1; once ω2 = ω1
    # = 1
    # the ∅ branch has weight 0 and is skipped (3-step run: from step 1)
    assert coarse_calls[:3] == [10, 8, 8]
    assert len(result.mesh.faces) > 0 and result.params["refine_size"] == load_prior(str(sd_dir)).resolution
