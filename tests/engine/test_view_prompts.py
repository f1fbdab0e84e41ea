"""View-dependent prompting: the view word of a camera, and texture jobs on a real-architecture prior sending one
prompt per camera (", front view" ... ) while the toy prior, whose vocabulary has no view words, gets none."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from csd_blender.protocol.params import TextureParams
from engine.guidance.views import view_names, view_prompt
from engine.priors import load_prior
from engine.render.cameras import orbit_from_angles
from engine.tasks.texture import make_texture_job, run_texture
from engine.testing.tiny_models import save_tiny_sd


def _cams(elevation, azimuth):
    n = len(azimuth)
    return orbit_from_angles(torch.tensor(elevation, dtype=torch.float64), torch.tensor(azimuth, dtype=torch.float64),
                             torch.full((n,), 2.0), torch.full((n,), 45.0), 8, 8)


def test_view_names_follow_threestudios_rules_in_blenders_frame():
    cams = _cams([10, 10, 10, 10, 10, 10, 70, -30], [0, 40, 50, 90, 180, -150, 0, 180])
    assert view_names(cams.c2w) == ["front", "front", "side", "side", "back", "back", "overhead", "back"]
    assert view_names(_cams([0], [30]).c2w, front_deg=30.0) == ["side"]        # the csd-if configs' threshold
    assert view_prompt("a red car", "back") == "a red car, back view"


class _Recording:
    """Wraps a prior: records encoded prompts and the embeddings of every UNet call."""

    def __init__(self, prior):
        self.prior, self.prompts, self.embeddings = prior, [], []

    def __getattr__(self, name):
        return getattr(self.prior, name)

    def encode_prompts(self, prompts):
        self.prompts += list(prompts)
        return self.prior.encode_prompts(prompts)

    def predict_noise(self, x_t, t, embeddings, control=None):
        self.embeddings.append(embeddings.detach().clone())
        return self.prior.predict_noise(x_t, t, embeddings, control)


def _sphere() -> dict:
    m = trimesh.creation.icosphere(subdivisions=1)
    return {"vertices": m.vertices.astype(np.float32), "faces": m.faces.astype(np.int32)}


def test_texture_job_on_a_real_architecture_sends_one_view_prompt_per_camera(tmp_path):
    prior = _Recording(load_prior(str(save_tiny_sd(tmp_path / "sd")), device="cpu"))
    params = TextureParams(prompt="a red sphere", model=str(tmp_path / "sd"), steps=3, batch_size=4,
                           texture_size=64, render_size=32, guidance="csd-sd-refine", progress_every=3)
    result = run_texture(make_texture_job(params, _sphere()), prior=prior)
    assert result.stats["view_prompts"] is True
    assert {f"a red sphere, {v} view" for v in ("front", "side", "back", "overhead")} <= set(prior.prompts)
    b = params.batch_size
    for emb in prior.embeddings:
        cond = emb[:b]                                   # the cond branch comes first in the batched call
        # uniform azimuths over 360°: a batch of 4 sees at least two different views
        assert len({tuple(row.flatten().tolist()) for row in cond}) >= 2


def test_toy_prior_gets_no_view_words():
    params = TextureParams(prompt="a red plain sphere", steps=2, batch_size=2, texture_size=64, progress_every=2,
                           preview_size=32)
    result = run_texture(make_texture_job(params, _sphere()))
    assert result.stats["view_prompts"] is False
