"""The paper's recipe on the bundled toy prior (issue 20), judged by plain image statistics of baked textures on
Spot (never by the model): `csd-toy` runs the official negative prompt with ω2 annealed and view-dependent prompts;
textures keep the prompt's colour family, the pattern's second colour comes out neutral as in the data, and the
paper's ablation (official negative prompt vs none) holds on four colours; the demo turntable's stripes are neutral.

The Spot runs are shared by the tests of this module (cached: 19 texture jobs of 150 steps in all).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from spot_colours import colour_stats, spot_pixels, stripe_neutral_share
from texture_stats import object_mask, off_colour_share

from engine.guidance import build_guidance
from engine.guidance.presets import OFFICIAL_NEGATIVE_PROMPT
from engine.priors import load_prior

DEMO_TURNTABLE = Path(__file__).resolve().parents[2] / "docs" / "demo_turntable.png"
ABLATION_COLOURS = ("green", "blue", "purple", "yellow")   # the colours whose v2 textures drifted most
SEEDS = (0, 1)
EMPTY = {"negative_prompt": ""}
# other colours and patterns for the off-colour criterion (seed 0); bench/README.md has every colour × pattern
MORE_CASES = (("red", "checkered"), ("orange", "dotted"), ("white", "striped"))


def test_csd_toy_is_the_official_recipe():
    cfg = build_guidance("csd-toy", total_steps=150).config
    assert cfg.negative_prompt == OFFICIAL_NEGATIVE_PROMPT
    assert cfg.omega2 == [0, 0.0, 1.0, 75] and cfg.omega1 == 1.0      # csd-if's ω2 0 → 1 over half the run
    assert cfg.perpneg_scale == 3.0 and cfg.weighting == "uniform" and cfg.grad_mode == "unit_l2"
    assert build_guidance("csd-toy", anchor=0.0).config.anchor == 0.0   # the paper's plain CSD stays a setting


@functools.cache
def _run(colour: str, pattern: str, seed: int, variant: str) -> np.ndarray:
    """Object pixels of the Spot turntable of "a {colour} {pattern} sphere"; variant "official" (csd-toy as shipped)
    or "empty" (the same with an empty negative prompt). Cached: the tests below share their runs."""
    return spot_pixels(f"a {colour} {pattern} sphere", seed, load_prior("toy"),
                       overrides=EMPTY if variant == "empty" else None)


def _ok(colour: str, variant: str) -> float:
    return float(np.mean([colour_stats(_run(colour, "striped", s, variant), colour)["ok"] for s in SEEDS]))


# Measured with toy prior v3 (seeds 0 / 1): blue 0.83 / 0.83 (beige legs and muzzle, HSV saturation 0.15-0.2),
# yellow 0.76 / 0.97 (lavender-tinted white bands on seed 0); the remedies tried (anchor, APG projection, the t drop)
# are in bench/README.md. Strict: remove a mark when a prior or a preset passes.
_SHORT = {"blue": "in family or neutral 0.83 (issue 20)", "yellow": "in family or neutral 0.87 (issue 20)"}


@pytest.mark.slow
@pytest.mark.parametrize("colour", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=_SHORT[c])) if c in _SHORT else c
    for c in ABLATION_COLOURS])
def test_paper_ablation_official_negative_keeps_stripes_in_family_or_neutral(colour):
    """"a {colour} striped sphere" on Spot, 150 steps, 2 seeds: with the official negative prompt and annealed ω2,
    ≥ 90 % of object pixels in the colour's family or neutral."""
    official, empty = _ok(colour, "official"), _ok(colour, "empty")
    assert official >= 0.9, f"a {colour} striped sphere: in family or neutral {official:.2f} (empty negative {empty:.2f})"


@pytest.mark.slow
def test_paper_ablation_official_negative_beats_an_empty_one_on_average():
    ok = {v: {c: _ok(c, v) for c in ABLATION_COLOURS} for v in ("official", "empty")}
    table = ", ".join(f"{c} {ok['official'][c]:.2f} / {ok['empty'][c]:.2f}" for c in ABLATION_COLOURS)
    assert np.mean(list(ok["official"].values())) > np.mean(list(ok["empty"].values())), \
        f"in family or neutral, official / empty negative: {table}"


@pytest.mark.slow
@pytest.mark.parametrize("colour, pattern, seed", [(c, "striped", s) for c in ABLATION_COLOURS for s in SEEDS]
                         + [(c, p, 0) for c, p in MORE_CASES])
def test_off_colour_share_on_spot_is_at_most_a_tenth(colour, pattern, seed):
    """Object pixels in a chromatic family the prompt did not name (the pattern's second colour should come out
    white or grey, as in the data): ≤ 10 %."""
    off = off_colour_share(_run(colour, pattern, seed, "official"), colour)
    assert off <= 0.10, f"a {colour} {pattern} sphere, seed {seed}: off-colour share {off:.3f}"


def test_demo_turntable_stripes_are_neutral():
    """docs/demo_turntable.png ("a blue striped sphere", `python -m engine demo`): ≥ 80 % of its stripe pixels have
    HSV saturation < 0.25 (white or grey, as in the data) and ≤ 10 % of its object pixels are off-colour."""
    from PIL import Image

    img = np.asarray(Image.open(DEMO_TURNTABLE).convert("RGB"), dtype=np.float32) / 255.0
    pixels = img[object_mask(img)]
    neutral, off = stripe_neutral_share(pixels, "blue"), off_colour_share(pixels, "blue")
    assert neutral >= 0.8 and off <= 0.10, f"stripe pixels neutral {neutral:.2f}, off-colour {off:.2f}"
