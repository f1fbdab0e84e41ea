"""Texture quality on the bundled toy prior, judged by plain image statistics of the BAKED texture rendered from
8 views (never by the model): colour family per view, stripe-frequency peaks, and the annealed negative prompt.
"""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from texture_stats import (
    family_share,
    hue_saturation,
    in_family,
    mean_hue,
    object_mask,
    red_fraction,
    stripe_peak,
)

from csd_blender.protocol.params import TextureParams
from engine.commands.texture import DEMO_MESH as SPOT
from engine.mesh import load_mesh
from engine.priors import load_prior
from engine.tasks.texture import make_texture_job, result_views, run_texture

STEPS = 150
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("sphere", "cube")
CASES = [(c, s) for c in COLOURS for s in SHAPES]


def _mesh(shape: str) -> dict:
    m = trimesh.creation.icosphere(subdivisions=3) if shape == "sphere" else trimesh.creation.box()
    return {"vertices": m.vertices.astype(np.float32), "faces": m.faces.astype(np.int32)}


def _views(prompt: str, shape: str, negative: str = "", seed: int = 0) -> np.ndarray:
    params = TextureParams(prompt=prompt, negative_prompt=negative, steps=STEPS, seed=seed, texture_size=256,
                           progress_every=STEPS)
    result = run_texture(make_texture_job(params, _mesh(shape)), prior=load_prior("toy"))
    return result_views(result, size=128)


@pytest.fixture(scope="module")
def plain_runs() -> dict:
    return {(c, s): _views(f"a {c} plain {s}", s) for c, s in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("colour, shape", CASES)
def test_mean_hue_in_colour_family_in_7_of_8_views(plain_runs, colour, shape):
    views = plain_runs[(colour, shape)]
    hues = [mean_hue(v, object_mask(v)) for v in views]
    hits = sum(in_family(h, s, colour) for h, s in hues)
    assert hits >= 7, f"a {colour} plain {shape}: {hits}/8 views in family; (hue, sat) = " + \
        ", ".join(f"({h:.0f}, {s:.2f})" for h, s in hues)


def _peak(views: np.ndarray) -> float:
    return float(np.median([stripe_peak(v, object_mask(v)) for v in views]))


@pytest.mark.slow
@pytest.mark.parametrize("colour", ["red", "green", "blue", "yellow"])
def test_striped_result_has_a_stripe_peak_that_plain_results_lack(plain_runs, colour):
    striped = _peak(_views(f"a {colour} striped sphere", "sphere"))
    plain = {c: _peak(plain_runs[(c, "sphere")]) for c in COLOURS}
    assert striped > 3 * max(plain.values()), f"striped {colour} peak {striped:.4f} vs plain spheres {plain}"


def _redness(views: np.ndarray) -> float:
    """Mean red-membership of object pixels: HSV saturation × max(0, cos(hue)), averaged over the views."""
    scores = []
    for v in views:
        h, s = hue_saturation(v[object_mask(v)][:, :3])
        scores.append(float((s * np.clip(np.cos(np.deg2rad(h)), 0, None)).mean()))
    return float(np.mean(scores))


@pytest.mark.slow
def test_annealed_negative_prompt_lowers_red():
    with_neg = _views("a sphere", "sphere", negative="a red sphere")
    without = _views("a sphere", "sphere")
    r_with, r_without = _redness(with_neg), _redness(without)
    hard_with = np.mean([red_fraction(v, object_mask(v)) for v in with_neg])
    hard_without = np.mean([red_fraction(v, object_mask(v)) for v in without])
    assert r_with < r_without, f"red fraction (soft) with negative {r_with:.3f} vs without {r_without:.3f}"
    assert hard_with <= hard_without, f"red fraction (hard) with negative {hard_with:.3f} vs {hard_without:.3f}"


def _spot() -> dict:
    mesh = load_mesh(SPOT, up="auto")
    return {"vertices": mesh.vertices.astype(np.float32), "faces": mesh.faces.astype(np.int32),
            "uvs": mesh.uvs.astype(np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("colour", COLOURS)
def test_csd_texture_on_spot_is_clean_not_just_tinted(colour):
    """No complementary-colour patches: object pixels of the baked texture's views are in the prompt colour's
    family or neutral (white / grey / black)."""
    params = TextureParams(prompt=f"a {colour} sphere", steps=STEPS, seed=0, texture_size=256, progress_every=STEPS)
    views = result_views(run_texture(make_texture_job(params, _spot()), prior=load_prior("toy")), size=128)
    shares = [family_share(v[object_mask(v)][:, :3], colour, neutral_ok=True) for v in views]
    assert np.mean(shares) >= 0.7, f"'a {colour} sphere' on Spot: in family or neutral {np.round(shares, 2)}"


def _views_in_family(colour: str, guidance: str, overrides: dict, seed: int) -> int:
    params = TextureParams(prompt=f"a {colour} sphere", steps=STEPS, seed=seed, texture_size=128,
                           guidance=guidance, guidance_overrides=overrides, progress_every=STEPS)
    views = result_views(run_texture(make_texture_job(params, _mesh("sphere")), prior=load_prior("toy")), size=64)
    return sum(in_family(*mean_hue(v, object_mask(v)), colour) for v in views)


@pytest.mark.slow
@pytest.mark.parametrize("colour", COLOURS)
def test_csd_follows_the_colour_at_least_as_well_as_sds(colour):
    """The paper's claim at equal steps, over two seeds: CSD's views in the colour family ≥ SDS's (scale 21,
    threestudio IF's 20). Two seeds, not three: every seed of both was 8/8 with the v2 prior, and the suite's
    budget is tight."""
    csd = sum(_views_in_family(colour, "csd-toy", {}, seed) for seed in (0, 1))
    sds = sum(_views_in_family(colour, "sds-sd", {"guidance_scale": 21.0}, seed) for seed in (0, 1))
    assert csd >= sds, f"a {colour} sphere: CSD {csd}/16 views in family, SDS {sds}/16"
