"""The bundled toy prior, judged by plain image statistics (never by the model itself): DDIM samples follow the
prompt's colour and pattern, it loads with stock diffusers/transformers classes, and 2D CSD moves an image the
way the prompt says."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from toy_adherence import TESTED_SHAPES, band_energy, colour_hit, ground_truth, shape_classifier

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from engine.guidance import PromptEmbeddings, build_guidance
from engine.priors import load_prior
from engine.priors.hub import TOY_PRIOR_DIR
from engine.toy.sample import ddim_sample
from engine.toy.vocabulary import COLOURS

N = 16
SHAPE_CYCLE = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")


def test_weights_are_committed_small_and_load_with_stock_classes():
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    size = sum(p.stat().st_size for p in TOY_PRIOR_DIR.rglob("*") if p.is_file())
    assert size <= 20 * 2**20, f"toy prior is {size / 2**20:.1f} MB"
    unet = UNet2DConditionModel.from_pretrained(TOY_PRIOR_DIR / "unet")
    assert unet.config.sample_size == 32 and unet.config.in_channels == 3
    tok = AutoTokenizer.from_pretrained(TOY_PRIOR_DIR / "tokenizer")
    assert tok("a red sphere", padding="max_length", max_length=tok.model_max_length).input_ids[:3] != [1, 1, 1]
    CLIPTextModel.from_pretrained(TOY_PRIOR_DIR / "text_encoder")
    assert DDPMScheduler.from_pretrained(TOY_PRIOR_DIR / "scheduler").config.beta_schedule == "squaredcos_cap_v2"
    info = json.loads((TOY_PRIOR_DIR / "training_info.json").read_text())
    assert info["final_loss_last_200_steps"] < 0.06


def test_unknown_words_list_the_vocabulary():
    prior = load_prior("toy")
    with pytest.raises(ProtocolError) as info:
        prior.encode_prompts(["a red teapot"])
    assert info.value.code == ErrorCode.BAD_PROMPT
    assert "teapot" in str(info.value) and "sphere" in str(info.value) and "checkered" in str(info.value)


# Measured with the bundled v2 prior (seed 1, 16 samples): orange 10 (red-leaning hues 13-22°), purple 14 and white
# 8 (confused with black: white with dark-grey stripes and black with white stripes are the same picture in the
# data, see engine/toy/dataset.sample_neutral). Strict: remove a mark when a retrained prior passes.
_WEAK = {"orange": "orange drifts to red (10/16)", "purple": "purple 14/16", "white": "white confused with black (8/16)"}


@pytest.mark.slow
@pytest.mark.parametrize("colour", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=_WEAK[c])) if c in _WEAK else c for c in COLOURS])
def test_ddim_samples_follow_every_colour_word(colour):
    shape = SHAPE_CYCLE[list(COLOURS).index(colour) % len(SHAPE_CYCLE)]
    samples = ddim_sample(TOY_PRIOR_DIR, f"a {colour} {shape}", N, steps=25, guidance_scale=4.0, seed=1).numpy()
    hits = sum(colour_hit(img, colour) for img in samples)
    assert hits >= 0.9 * N, f"{hits}/{N} samples of 'a {colour} {shape}' in the {colour} family"


@pytest.mark.slow
@pytest.mark.parametrize("colour", ["red", "green", "blue", "yellow"])
def test_striped_samples_have_more_band_energy_than_plain(colour):
    striped = ddim_sample(TOY_PRIOR_DIR, f"a {colour} striped sphere", N, steps=25, seed=2).numpy()
    plain = ddim_sample(TOY_PRIOR_DIR, f"a {colour} plain sphere", N, steps=25, seed=2).numpy()
    e_striped = np.median([band_energy(i) for i in striped])
    e_plain = np.median([band_energy(i) for i in plain])
    assert e_striped > 1.5 * e_plain, f"band energy striped {e_striped:.4f} vs plain {e_plain:.4f}"


def test_silhouette_classifier_names_held_back_ground_truth_views():
    clf = shape_classifier()
    for i, shape in enumerate(TESTED_SHAPES):
        views = ground_truth(shape, 60, seed=900 + i)        # seeds the classifier never saw
        named = [clf.predict(v) for v in views]
        assert sum(n == shape for n in named) >= 0.9 * len(views), f"{shape}: named {named}"


@pytest.mark.slow
@pytest.mark.parametrize("shape", TESTED_SHAPES)
def test_ddim_samples_show_the_prompt_shape(shape):
    colour = ("red", "green", "blue", "yellow")[TESTED_SHAPES.index(shape)]
    samples = ddim_sample(TOY_PRIOR_DIR, f"a {colour} {shape}", N, steps=25, guidance_scale=4.0, seed=3).numpy()
    named = [shape_classifier().predict(img) for img in samples]
    assert sum(n == shape for n in named) >= 0.7 * N, f"'a {colour} {shape}' named {named}"


def _csd_2d(omega: float, steps: int = 300) -> np.ndarray:
    prior = load_prior("toy")
    prompts = PromptEmbeddings.from_prompts(prior, "a blue plain sphere")
    overrides = {} if omega else {"omega1": 0.0, "omega2": 0.0}
    guidance = build_guidance("csd-toy", total_steps=steps, **overrides)
    image = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    opt = torch.optim.Adam([image], lr=0.02)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        out = guidance(prior, prior.to_model_space(image.clamp(0, 1)), prompts, step, generator=gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return image.detach().clamp(0, 1)[0].permute(1, 2, 0).numpy()


@pytest.mark.slow
def test_2d_csd_turns_grey_blue_and_zero_weights_leave_it_grey():
    centre = _csd_2d(1.0)[10:22, 10:22].reshape(-1, 3).mean(0)
    assert centre[2] > centre[0] + 0.1 and centre[2] > centre[1] + 0.1, f"centre RGB {centre}"
    still = _csd_2d(0.0)
    assert np.abs(still - 0.5).max() < 1e-6, "with every CSD weight at zero the image must not move"
