"""Texture quality on the bundled toy prior, judged by plain image statistics of the BAKED texture rendered from
8 views (never by the model): colour family per view, stripe-frequency peaks, and the annealed negative prompt.
"""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from csd_blender.protocol.jobs import TextureParams
from engine.priors import load_prior
from engine.tasks.texture import make_texture_job, result_views, run_texture
from texture_stats import in_family, mean_hue, object_mask, red_fraction, stripe_peak

STEPS = 200
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("sphere", "cube")
# each colour appears once plain and once striped, so the same 8 runs also serve the stripe test
CASES = [(c, s, "plain" if (i + j) % 2 == 0 else "striped") for i, c in enumerate(COLOURS)
         for j, s in enumerate(SHAPES)]


def _mesh(shape: str) -> dict:
    m = trimesh.creation.icosphere(subdivisions=3) if shape == "sphere" else trimesh.creation.box()
    return {"vertices": m.vertices.astype(np.float32), "faces": m.faces.astype(np.int32)}


def _views(prompt: str, shape: str, negative: str = "", seed: int = 0) -> np.ndarray:
    params = TextureParams(prompt=prompt, negative_prompt=negative, steps=STEPS, seed=seed, texture_size=256,
                           progress_every=STEPS)
    result = run_texture(make_texture_job(params, _mesh(shape)), prior=load_prior("toy"))
    return result_views(result, size=128)


@pytest.fixture(scope="module")
def runs() -> dict:
    return {(c, s, p): _views(f"a {c} {p} {s}", s) for c, s, p in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("colour, shape, pattern", CASES)
def test_mean_hue_in_colour_family_in_7_of_8_views(runs, colour, shape, pattern):
    views = runs[(colour, shape, pattern)]
    hues = [mean_hue(v, object_mask(v)) for v in views]
    hits = sum(in_family(h, s, colour) for h, s in hues)
    assert hits >= 7, f"a {colour} {pattern} {shape}: {hits}/8 views in family; (hue, sat) = " + \
        ", ".join(f"({h:.0f}, {s:.2f})" for h, s in hues)


@pytest.mark.slow
def test_striped_results_have_a_stripe_peak_that_plain_results_lack(runs):
    peaks = {k: float(np.median([stripe_peak(v, object_mask(v)) for v in views])) for k, views in runs.items()}
    striped = [v for (c, s, p), v in peaks.items() if p == "striped"]
    plain = [v for (c, s, p), v in peaks.items() if p == "plain"]
    assert min(striped) > max(plain), f"striped peaks {sorted(striped)} vs plain peaks {sorted(plain)}"


@pytest.mark.slow
def test_annealed_negative_prompt_lowers_red():
    with_neg = _views("a sphere", "sphere", negative="a red sphere", seed=3)
    without = _views("a sphere", "sphere", seed=3)
    red_with = np.mean([red_fraction(v, object_mask(v)) for v in with_neg])
    red_without = np.mean([red_fraction(v, object_mask(v)) for v in without])
    assert red_with < red_without, f"red fraction with negative {red_with:.3f} vs without {red_without:.3f}"
