"""The toy prior's words: eight colours, four patterns, six shapes (captions "a {colour} {pattern} {shape}"),
threestudio's view words (", front view" / side / back / overhead, engine/guidance/views.py) and the artefact
words of the official CSD negative prompt ("oversaturated color, ugly, tiling, low quality, noisy").

Each colour is a region of HSV space (hue range in degrees, saturation and value ranges) that the dataset draws
from, so the model learns a colour family rather than one RGB triple. `COLOURS` keeps one representative RGB
value per word (the centre of its region) for code that needs a single colour.
"""
import colorsys

# name: ((hue_lo, hue_hi) degrees, may wrap below 0; (s_lo, s_hi); (v_lo, v_hi))
COLOUR_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-10.0, 6.0), (0.72, 0.95), (0.62, 0.95)),
    "green": ((100.0, 140.0), (0.62, 0.92), (0.45, 0.80)),
    "blue": ((214.0, 236.0), (0.65, 0.92), (0.62, 0.95)),
    "yellow": ((49.0, 58.0), (0.78, 0.96), (0.85, 1.00)),
    "orange": ((27.0, 36.0), (0.80, 0.96), (0.88, 1.00)),
    "purple": ((274.0, 298.0), (0.55, 0.85), (0.45, 0.80)),
    "white": ((0.0, 360.0), (0.00, 0.05), (0.90, 1.00)),
    "black": ((0.0, 360.0), (0.00, 0.15), (0.04, 0.15)),
}


def _centre(name: str) -> tuple[float, float, float]:
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[name]
    return colorsys.hsv_to_rgb(((h0 + h1) / 2 % 360) / 360, (s0 + s1) / 2, (v0 + v1) / 2)


COLOURS: dict[str, tuple[float, float, float]] = {name: _centre(name) for name in COLOUR_HSV}
# the second colour of every pattern, for every colour: white, light grey, dark grey (the one that would vanish is
# skipped for white and black; see dataset.sample_neutral)
NEUTRALS: dict[str, float] = {"white": 0.95, "light grey": 0.72, "dark grey": 0.20}
PATTERNS = ("plain", "striped", "checkered", "dotted")
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")
# threestudio's view words, in engine.guidance.views.VIEWS order; a caption carries them as ", {view} view"
VIEW_WORDS = ("side", "front", "back", "overhead", "view")
# The official CSD negative prompt; each phrase names one procedural degradation of the training images
# (engine/toy/dataset.py degrade) and is never used on clean images.
NEGATIVE_PROMPT = "oversaturated color, ugly, tiling, low quality, noisy"
ARTEFACTS = ("oversaturated color", "ugly", "tiling", "low quality", "noisy")   # the official prompt's order
ARTEFACT_WORDS = tuple(w for phrase in ARTEFACTS for w in phrase.split())
VOCABULARY = ("a", *COLOURS, *PATTERNS, *SHAPES, *VIEW_WORDS, *ARTEFACT_WORDS)
