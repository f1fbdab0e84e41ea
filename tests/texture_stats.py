"""Plain image statistics for judging textures without the model: hue families, red fraction, stripe peaks."""
from __future__ import annotations

import colorsys

import numpy as np

# hue ranges in degrees (the family of each prompt colour)
HUE_FAMILIES = {"red": [(330, 360), (0, 22)], "orange": [(22, 40)], "yellow": [(40, 75)], "green": [(75, 170)],
                "blue": [(190, 265)], "purple": [(265, 330)]}
NEUTRAL_SATURATION = 0.15   # HSV saturation below which a pixel counts as white / grey / black


def object_mask(image: np.ndarray, background=(1.0, 1.0, 1.0), tol: float = 0.02) -> np.ndarray:
    """(H, W) bool: pixels that differ from the (white) render background."""
    return np.abs(image[..., :3] - np.asarray(background)).max(-1) > tol


def mean_hue(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(hue in degrees, saturation) of the mean colour of the masked pixels."""
    r, g, b = image[mask][:, :3].mean(0)
    h, _, s = colorsys.rgb_to_hls(float(r), float(g), float(b))
    return h * 360.0, s


def in_family(hue: float, saturation: float, colour: str, min_saturation: float = 0.12) -> bool:
    """Whether a mean hue/saturation belongs to `colour`'s family."""
    return saturation >= min_saturation and any(lo <= hue < hi for lo, hi in HUE_FAMILIES[colour])


def hue_saturation(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel HSV hue (degrees) and saturation of (N, 3) RGB values in [0, 1]."""
    mx, mn = pixels.max(1), pixels.min(1)
    c = np.maximum(mx - mn, 1e-9)
    r, g, b = pixels.T
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4)) * 60.0
    return h, (mx - mn) / np.maximum(mx, 1e-9)


def red_fraction(image: np.ndarray, mask: np.ndarray) -> float:
    """Share of object pixels that are clearly red (hue in the red family, HSV saturation > 0.35)."""
    h, s = hue_saturation(image[mask][:, :3])
    red = (s > 0.35) & ((h >= 330) | (h < 22))
    return float(red.mean())


def stripe_peak(image: np.ndarray, mask: np.ndarray, min_pixels: int = 4) -> float:
    """Strength of a periodic horizontal-band pattern: power of the strongest vertical frequency (k ≥ 2 cycles
    over the object's height) of the row-mean luminance profile, relative to the mean object luminance².

    A plain texture gives a nearly flat profile (≈ 0); horizontal stripes give a large peak.
    """
    lum = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    rows = [lum[i][mask[i]].mean() for i in range(lum.shape[0]) if mask[i].sum() >= min_pixels]
    if len(rows) < 8:
        return 0.0
    prof = np.asarray(rows)
    x = np.arange(len(prof))
    prof = prof - np.polyval(np.polyfit(x, prof, 1), x)
    power = np.abs(np.fft.rfft(prof * np.hanning(len(prof)))) ** 2 / len(prof)
    return float(power[2:].max() / max(lum[mask].mean() ** 2, 1e-6))


def family_share(pixels: np.ndarray, colour: str, neutral_ok: bool = False) -> float:
    """Share of (N, 3) RGB pixels whose own hue lies in `colour`'s family (HSV saturation > 0.2), counting neutral
    pixels (saturation < NEUTRAL_SATURATION: white, grey, black) as in the family when `neutral_ok`."""
    h, s = hue_saturation(pixels)
    hit = (s > 0.2) & np.any([(h >= lo) & (h < hi) for lo, hi in HUE_FAMILIES[colour]], axis=0)
    if neutral_ok:
        hit |= s < NEUTRAL_SATURATION
    return float(hit.mean()) if len(pixels) else 0.0
