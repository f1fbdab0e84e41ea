"""How well samples of the toy prior follow a prompt, by plain image statistics (never the model's opinion):
colour family of the object, horizontal-band energy, and the shape named by a silhouette classifier fitted on
ground-truth renders. Shared by tests/test_toy_prior.py and bench/guidance.py."""
from __future__ import annotations

import functools

import numpy as np

from silhouette import SilhouetteClassifier, object_mask
from texture_stats import HUE_FAMILIES, hue_saturation, in_family, mean_hue

TESTED_SHAPES = ("cube", "sphere", "cone", "torus")   # the four the silhouette classifier separates
CHROMATIC = ("red", "orange", "yellow", "green", "blue", "purple")


def pixel_families(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel membership of (N, 3) RGB pixels: each chromatic family by hue (HSV saturation > 0.25, value >
    0.25), "white" (saturation ≤ 0.2, value ≥ 0.65) and "black" (value ≤ 0.3); mid greys belong to none."""
    h, s = hue_saturation(pixels)
    v = pixels.max(1)
    fam = {c: (s > 0.25) & (v > 0.25) & np.any([(h >= lo) & (h < hi) for lo, hi in HUE_FAMILIES[c]], axis=0)
           for c in CHROMATIC}
    fam["white"] = (s <= 0.2) & (v >= 0.65)
    fam["black"] = v <= 0.3
    return fam


def colour_hit(img: np.ndarray, colour: str) -> bool:
    """Whether one (H, W, 3) sample shows an object of `colour`.

    Chromatic colours: the object (pixels far from the border's median colour, ≥ 20 of them) has a mean hue in
    the colour's family (tests/texture_stats.py). White and black, which have no hue: the object (a lower
    threshold, light objects sit on light backgrounds) has more white (resp. black) pixels than pixels of any
    other colour word's family — the plurality colour, since patterns add a neutral second colour.
    """
    if colour in CHROMATIC:
        m = object_mask(img)
        return bool(m.sum() >= 20 and in_family(*mean_hue(img, m), colour))
    if colour not in ("white", "black"):
        raise ValueError(f"no colour test for {colour!r}")
    m = object_mask(img, threshold=0.15)
    if m.sum() < 20:
        return False
    counts = {k: int(v.sum()) for k, v in pixel_families(img[m]).items()}
    return counts[colour] > max(n for k, n in counts.items() if k != colour)


def band_energy(img: np.ndarray) -> float:
    """Mean absolute row-to-row luminance change inside the object (horizontal stripes make it large)."""
    lum = img @ np.array([0.299, 0.587, 0.114])
    m = object_mask(img)
    d = np.abs(np.diff(lum, axis=0))[m[1:] & m[:-1]]
    return float(d.mean()) if d.size else 0.0


def ground_truth(shape: str, n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) plain renders of `shape` from the dataset's own camera ranges, in the four tested colours."""
    import torch

    from engine.toy.dataset import DatasetConfig, render_batch

    with torch.no_grad():
        colours = [("red", "green", "blue", "yellow")[i % 4] for i in range(n)]
        images, _, _ = render_batch(shape, n, np.random.default_rng(seed), DatasetConfig(), colours=colours,
                                    patterns=["plain"] * n)
    return images.permute(0, 2, 3, 1).numpy()


@functools.lru_cache(maxsize=1)
def shape_classifier(per_shape: int = 240, seed: int = 101) -> SilhouetteClassifier:
    """The silhouette classifier fitted on `per_shape` ground-truth renders of each TESTED_SHAPES."""
    return SilhouetteClassifier.fit({s: ground_truth(s, per_shape, seed + i) for i, s in enumerate(TESTED_SHAPES)})
