"""Text to mesh against the exact prior (engine/testing/exact_prior.py): a prior whose right answer is known.

Unit tests of the fixture (its denoiser, its classifier direction, its prompts and cameras), then the pipeline:
`generate` at the `fast` preset for each of the four reference shapes must give one connected watertight mesh whose
8-view silhouette IoU with its own reference is ≥ 0.85 and higher than with each other reference (issue 21).
Run alone with `-k exact_prior`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from csd_blender.protocol.params import GenerateParams
from engine.errors import EngineError
from engine.render.rays import camera_rays
from engine.render.volume import render_rays
from engine.tasks.common.views import OrbitRanges, ViewSampler, fixed_views
from engine.tasks.generate import make_generate_job, run_generate
from engine.testing.exact_prior import SHAPES, ExactPrior, shape_ious


def _prior_with_views(n: int = 4, seed: int = 0) -> ExactPrior:
    prior = ExactPrior()
    prior.observe(ViewSampler(OrbitRanges(), prior.resolution, torch.Generator().manual_seed(seed)).sample(n))
    return prior


def test_exact_prior_prompts_name_shapes_and_anything_else_is_the_mixture():
    prior = ExactPrior()
    emb = prior.encode_prompts(["a cube", "a torus, front view", "", "oversaturated color, ugly, tiling, noisy",
                                "a red sphere, overhead view"])
    assert [prior.shape_of(e) for e in emb] == ["cube", "torus", None, None, "sphere"]
    assert emb.shape == (5, 1, len(SHAPES))


def test_exact_prior_denoiser_at_small_t_recovers_each_reference():
    prior = _prior_with_views()
    refs = prior.references                                          # (K, looks, B, 3, R, R)
    assert refs.shape[:2] == (len(SHAPES), 2)
    b = refs.shape[2]
    t = torch.full((b,), 5)
    a = prior.alphas_cumprod[5]
    gen = torch.Generator().manual_seed(0)
    for k, shape in enumerate(SHAPES):
        for look in range(refs.shape[1]):   # the flat render and the geometry batch's grey shading
            x = refs[k, look]
            noise = torch.randn(x.shape, generator=gen)
            x_t = prior.add_noise(x, noise, t)
            for prompt in (f"a {shape}", ""):   # the conditional, and the mixture (sure at small t)
                eps = prior.predict_noise(x_t, t, prior.encode_prompts([prompt]).expand(b, -1, -1))
                x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
                assert (x0 - x).abs().max() < 1e-4, (shape, look, prompt)
                assert torch.allclose(eps, noise, atol=1e-3), (shape, look, prompt)


def test_exact_prior_classifier_direction_points_from_a_mixture_to_the_named_shape():
    """ε(y) − ε(∅) is the (scaled, negative) classifier score: a CSD step −(ε(y) − ε(∅)) from the average of the
    references moves towards the named one, away from every other, at every noise level."""
    prior = _prior_with_views()
    refs = prior.references[:, 0]   # the flat look
    b = refs.shape[1]
    mix = refs.mean(0)
    gen = torch.Generator().manual_seed(1)
    null = prior.encode_prompts([""]).expand(b, -1, -1)
    for t_val in (100, 500, 900):
        t = torch.full((b,), t_val)
        x_t = prior.add_noise(mix, torch.randn(mix.shape, generator=gen), t)
        for k, shape in enumerate(SHAPES):
            cond = prior.encode_prompts([f"a {shape}"]).expand(b, -1, -1)
            eps = prior.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null]))
            step = -(eps[:b] - eps[b:])
            towards = ((refs[k] - mix) * step).flatten(1).sum(1)
            norm = step.flatten(1).norm(dim=1)
            # at small t the posterior may already be sure of the nearest reference: then y = that shape has
            # nothing left to say (step 0); otherwise, and always at large t, the step points towards shape k
            assert (towards >= 0).all() and ((towards > 0) | (norm < 1e-6)).all(), (t_val, shape)
            if t_val >= 900:
                assert (norm > 1e-3).all(), (t_val, shape)
            live = norm > 1e-6
            moved = mix + 0.5 * step / norm.clamp_min(1e-12).view(-1, 1, 1, 1) * (refs[k] - mix).flatten(
                1).norm(dim=1).view(-1, 1, 1, 1)
            for j in range(len(SHAPES)):
                if j != k:
                    closer = (moved - refs[k]).flatten(1).norm(dim=1) < (moved - refs[j]).flatten(1).norm(dim=1)
                    assert closer[live].all(), (t_val, shape, SHAPES[j])


def test_exact_prior_references_match_the_volume_renderer_and_a_flipped_camera_does_not():
    """The references and the coarse stage's rays agree on the camera convention (an analytic cube density,
    volume-rendered, covers the cube reference's pixels); rows flipped, they disagree (the check can fail)."""
    cams = ViewSampler(OrbitRanges(), 32, torch.Generator().manual_seed(2)).sample(4)
    prior = ExactPrior(supersample=1)
    prior.observe(cams)
    ref_mask = prior.references[SHAPES.index("cube"), 0][:, 0] < 0.0   # object grey 0.45 → −0.1, background +1

    def cube_field(x):
        return (x.abs().max(-1).values < 0.5).float() * 200.0, torch.full((len(x), 3), 0.45)

    origins, dirs = camera_rays(cams)
    out = render_rays(cube_field, origins.reshape(-1, 3), dirs.reshape(-1, 3), 1.0, 256)
    vol_mask = out.opacity.reshape(4, 32, 32) > 0.5
    assert (ref_mask == vol_mask).float().mean() > 0.99
    assert (ref_mask == vol_mask.flip(1)).float().mean() < 0.9


def test_exact_prior_watches_the_view_sampler_and_refuses_a_call_it_cannot_place():
    prior = ExactPrior()
    original = ViewSampler.sample
    with prior.watching():
        cams = ViewSampler(OrbitRanges(), 32, torch.Generator().manual_seed(0)).sample(3)
        assert prior.cameras is cams
    assert ViewSampler.sample is original
    x = torch.zeros(4, 3, 32, 32)   # 4 is not a multiple of the 3 cameras observed
    with pytest.raises(EngineError):
        prior.predict_noise(x, torch.full((4,), 10), prior.encode_prompts([""] * 4))
    with pytest.raises(EngineError):
        ExactPrior().predict_noise(x, torch.full((4,), 10), prior.encode_prompts([""] * 4))  # no cameras yet


# --- the pipeline --------------------------------------------------------------------------------------------

MIN_IOU = 0.85


def generate_on_exact_prior(shape: str, **params):
    """`generate` "a {shape}" at the fast preset on the CPU with the exact prior (watching the view sampler)."""
    prior = ExactPrior()
    job = make_generate_job(GenerateParams(prompt=f"a {shape}", quality="fast", device="cpu", **params), {})
    with prior.watching():
        return run_generate(job, prior=prior)


GROWS_OUT_OF_THE_BLOB = pytest.mark.xfail(
    strict=True,
    reason="issue 21 open (2026-12-06): at `fast` the coarse NeRF never grows out of its blob (a sphere inscribed in "
    "the cube), so 'a cube' gives a squircle (cube IoU 0.44-0.55 vs sphere 0.83-0.88 with the csd-if, csd-if-object "
    "and no-orientation regularisers and without occupancy culling alike) and 'a cone' a rounded lump (cone 0.45 vs "
    "sphere 0.73); sphere and torus, carved from the blob, pass; drop when they pass",
)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [pytest.param(s, marks=GROWS_OUT_OF_THE_BLOB) if s in ("cube", "cone") else s
                                   for s in SHAPES])
def test_generate_on_the_exact_prior_makes_the_prompted_shape(shape):
    result = generate_on_exact_prior(shape)
    m = result.mesh
    mesh = trimesh.Trimesh(m.vertices, m.faces, process=True)
    assert len(mesh.split(only_watertight=False)) == 1, result.stats
    assert mesh.is_watertight, result.stats
    ious = shape_ious(m.vertices, m.faces)
    own = ious[shape]
    assert own >= MIN_IOU, ious
    assert all(own > v for s, v in ious.items() if s != shape), ious
    assert np.isfinite(m.vertices).all()
