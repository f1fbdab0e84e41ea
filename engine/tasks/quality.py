"""Quality presets: what `fast`, `balanced` and `best` mean in steps, batch size and texture size per prior family.

Families: "toy" (the bundled 32×32 prior, CPU minutes), "if" (DeepFloyd IF stage I, 64×64 pixels) and "sd"
(Stable Diffusion latent priors at 512×512). The real-model figures follow the official CSD runs (10 000 steps at
batch 1-4) scaled down for texturing a fixed mesh, where only the colour field is optimised.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quality:
    """Resolved defaults of one preset.

    Attributes:
        steps: optimisation steps.
        batch_size: views per step.
        texture_size: baked texture edge in texels.
        max_resolution: finest hash-grid resolution of the texture field.
        log2_hashmap_size: hash-table size of the texture field.
    """

    steps: int
    batch_size: int
    texture_size: int
    max_resolution: int
    log2_hashmap_size: int


QUALITY: dict[str, dict[str, Quality]] = {
    "toy": {
        "fast": Quality(150, 4, 256, 128, 14),
        "balanced": Quality(300, 4, 512, 256, 15),
        "best": Quality(600, 8, 1024, 256, 16),
    },
    "if": {
        "fast": Quality(1500, 4, 1024, 1024, 18),
        "balanced": Quality(3000, 4, 1024, 2048, 19),
        "best": Quality(6000, 8, 2048, 2048, 19),
    },
    "sd": {
        "fast": Quality(800, 1, 1024, 2048, 19),
        "balanced": Quality(2000, 2, 1024, 2048, 19),
        "best": Quality(5000, 4, 2048, 4096, 19),
    },
}


def quality_for(family: str, preset: str) -> Quality:
    """The preset's defaults for a prior family ("toy", "if", "sd"; unknown families use "sd").

    Args:
        family: the prior's family attribute.
        preset: "fast", "balanced" or "best".
    """
    return QUALITY.get(family, QUALITY["sd"])[preset]
