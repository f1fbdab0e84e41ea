"""Text-to-mesh quality presets: steps and sizes of the coarse and refine stages per prior family.

Official runs (csd_reference.md §2a–2b) are 10 000 coarse steps at 64² batch 4 with 512 samples per ray and
10 000 refine steps on a 256 grid at 512²; the real-model presets scale that down, the toy presets fit CPU
minutes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerateQuality:
    """Resolved defaults of one preset.

    Attributes:
        steps_coarse, steps_refine: optimisation steps per stage.
        batch_size: coarse views per step (the refine stage uses `refine_batch`).
        refine_batch: refine views per step.
        samples_per_ray: coarse volume-rendering samples per ray.
        tet_resolution: DMTet grid cells per axis.
        texture_size: baked texture edge.
        n_levels, log2_hashmap_size: hash grid of the coarse field.
        isosurface_threshold: density at the extracted surface (official 10 after 10 000 steps; short toy runs
            never build densities that high: 1).
    """

    steps_coarse: int
    steps_refine: int
    batch_size: int
    refine_batch: int
    samples_per_ray: int
    tet_resolution: int
    texture_size: int
    n_levels: int
    log2_hashmap_size: int
    isosurface_threshold: float


GENERATE_QUALITY: dict[str, dict[str, GenerateQuality]] = {
    "toy": {
        "fast": GenerateQuality(200, 60, 4, 2, 48, 32, 256, 8, 15, 1.0),
        "balanced": GenerateQuality(400, 120, 4, 2, 64, 48, 512, 10, 16, 1.0),
        "best": GenerateQuality(800, 300, 4, 4, 96, 64, 1024, 12, 17, 1.0),
    },
    "if": {
        "fast": GenerateQuality(2500, 1500, 4, 1, 256, 128, 1024, 12, 19, 10.0),
        "balanced": GenerateQuality(5000, 3000, 4, 1, 384, 192, 1024, 12, 19, 10.0),
        "best": GenerateQuality(10000, 10000, 4, 1, 512, 256, 2048, 12, 19, 10.0),
    },
}


def generate_quality_for(family: str, preset: str) -> GenerateQuality:
    """The preset's defaults for a prior family ("toy"; every real family uses the "if" row).

    Args:
        family: the coarse prior's family attribute.
        preset: "fast", "balanced" or "best".
    """
    return GENERATE_QUALITY["toy" if family == "toy" else "if"][preset]
