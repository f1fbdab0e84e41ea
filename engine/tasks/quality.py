"""Quality presets: what `fast`, `balanced` and `best` mean in steps, batch size and texture size per prior family.

The table lives in csd_blender.protocol.presets so the add-on shows the same resolved values; this module
re-exports it for the engine.

Families: "toy" (the bundled 32×32 prior, CPU minutes), "if" (DeepFloyd IF stage I, 64×64 pixels) and "sd"
(Stable Diffusion latent priors at 512×512). The real-model figures follow the official CSD runs (10 000 steps at
batch 1-4) scaled down for texturing a fixed mesh, where only the colour field is optimised.
"""
from __future__ import annotations

from csd_blender.protocol.presets import QUALITY, Quality, quality_for  # noqa: F401  (one table, shared)
