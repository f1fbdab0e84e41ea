"""The toy prior's words: eight colours, four patterns, six shapes (captions "a {colour} {pattern} {shape}")."""

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.12, 0.68, 0.16),
    "blue": (0.12, 0.22, 0.88),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.50, 0.08),
    "purple": (0.55, 0.15, 0.75),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}
PATTERNS = ("plain", "striped", "checkered", "dotted")
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")
VOCABULARY = ("a", *COLOURS, *PATTERNS, *SHAPES)
