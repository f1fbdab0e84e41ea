"""The artefacts of the official negative prompt, made procedurally on a training image ("oversaturated color",
"ugly", "tiling", "low quality", "noisy"; the recipe is in engine/toy/dataset.py's docstring)."""
from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
import torch.nn.functional as F

from .vocabulary import ARTEFACTS


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] → (..., 3) HSV with hue in [0, 1)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    d = v - rgb.min(-1)
    s = np.where(v > 0, d / np.maximum(v, 1e-8), 0.0)
    dd = np.maximum(d, 1e-8)
    h = np.where(v == r, (g - b) / dd, np.where(v == g, 2.0 + (b - r) / dd, 4.0 + (r - g) / dd))
    h = np.where(d > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) HSV (hue in [0, 1), wraps) → (..., 3) RGB."""
    h, s, v = hsv[..., 0] % 1.0, hsv[..., 1], hsv[..., 2]
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random (size, size) field in [0, 1]: a cells×cells grid of uniform values, bilinearly upsampled."""
    grid = torch.tensor(rng.random((1, 1, cells, cells)), dtype=torch.float32)
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)[0, 0].numpy()


def _resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    x = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x, size=size, mode=mode, **kw)[0].permute(1, 2, 0).numpy()


def _oversaturated(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = _rgb_to_hsv(img)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    w = s ** 4
    if w.sum() > 1e-3 and s.max() > 0.3:   # the dominant hue (the object's), circular mean weighted by saturation
        main = math.atan2(float((w * np.sin(2 * np.pi * h)).sum()), float((w * np.cos(2 * np.pi * h)).sum()))
        main = main / (2 * np.pi)
    else:
        main = float(rng.random())
    comp = main + 0.5 + rng.uniform(-0.1, 0.1)
    neutral = s < 0.25
    patches = _smooth_field(rng, img.shape[0], int(rng.integers(3, 6))) > rng.uniform(0.6, 0.8)
    h = np.where(neutral, comp + 0.05 * (_smooth_field(rng, img.shape[0], 3) - 0.5), h)   # smooth: no grain
    h = np.where(patches & ~neutral, h + 0.5 + rng.uniform(-0.08, 0.08), h)
    s = 1.0 - (1.0 - np.where(neutral, rng.uniform(0.7, 0.95), s)) * rng.uniform(0.0, 0.25)
    v = np.clip(v * rng.uniform(1.0, 1.2) + rng.uniform(0.0, 0.1), 0, 1)
    return _hsv_to_rgb(np.stack([h, s, v], -1))


def _ugly(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = img.copy()
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(4, size - 4, 2)
        angle = rng.uniform(0, np.pi)
        a, b = rng.uniform(2.5, 8.0), rng.uniform(2.5, 8.0) * (rng.uniform(1.5, 3.0) if rng.random() < 0.4 else 1.0)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        t = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        alpha = np.exp(-((u / b) ** 2 + (t / a) ** 2) ** 1.5) * rng.uniform(0.55, 0.9)
        colour = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.25, 0.95)))
        out = out * (1 - alpha[..., None]) + colour * alpha[..., None]
    return out


def _tiling(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    ty, tx = [(2, 2), (2, 1), (1, 2)][rng.choice(3, p=[0.6, 0.2, 0.2])]
    th, tw = size // ty, size // tx
    ch, cw = (min(size, int(t * rng.uniform(1.0, 1.5) + 0.5)) for t in (th, tw))
    y0, x0 = int(rng.integers(0, size - ch + 1)), int(rng.integers(0, size - cw + 1))
    tile = _resize(img[y0:y0 + ch, x0:x0 + cw], (th, tw), "bilinear")
    out = np.tile(tile, (ty, tx, 1))
    if rng.random() < 0.7:   # a visible seam
        shade = rng.uniform(0.55, 0.8) if rng.random() < 0.7 else rng.uniform(1.2, 1.4)
        for k in range(1, ty):
            out[k * th - 1:k * th + 1] *= shade
        for k in range(1, tx):
            out[:, k * tw - 1:k * tw + 1] *= shade
    return out


def _low_quality(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    small = int(rng.choice([6, 8, 10, 12]))
    out = _resize(_resize(img, (small, small), "area"), (size, size), "nearest" if rng.random() < 0.5 else "bilinear")
    if rng.random() < 0.4:
        levels = int(rng.integers(3, 6))
        out = np.round(out * (levels - 1)) / (levels - 1)
    return out


def _noisy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.06, 0.18)
    noise = rng.normal(0, sigma, img.shape)
    if rng.random() < 0.4:   # partly luminance noise
        noise = 0.5 * noise + 0.5 * noise.mean(-1, keepdims=True) * math.sqrt(3)
    return img + noise


# the official negative prompt's phrases → degradation, applied in this order when an image gets two
DEGRADATIONS = {"tiling": _tiling, "ugly": _ugly, "oversaturated color": _oversaturated, "low quality": _low_quality,
                "noisy": _noisy}
assert set(DEGRADATIONS) == set(ARTEFACTS)


def degrade(img: np.ndarray, artefacts: list[str], rng: np.random.Generator) -> np.ndarray:
    """`img` (H, W, 3) in [0, 1] spoilt by each of `artefacts` (phrases of vocabulary.ARTEFACTS), in a fixed order."""
    for name, spoil in DEGRADATIONS.items():
        if name in artefacts:
            img = np.clip(spoil(img, rng), 0.0, 1.0)
    return img
