"""Background colours composited behind training renders (random light solid colours, or a fixed colour)."""

from __future__ import annotations

import torch

FIXED_BACKGROUNDS = {"white": 1.0, "black": 0.0, "gray": 0.5}


def solid_backgrounds(mode: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) background colours.

    Args:
        mode: "random" (uniform in [0.55, 1]^3 per image: the toy prior's and SDS practice) or one of
            "white", "black", "gray".
        n: number of images.
        gen: CPU generator the random colours are drawn from (nothing is drawn for fixed modes).
    """
    if mode == "random":
        return 0.55 + 0.45 * torch.rand(n, 3, generator=gen)
    if mode not in FIXED_BACKGROUNDS:
        raise ValueError(f"background: unknown mode {mode!r}")
    return torch.full((n, 3), FIXED_BACKGROUNDS[mode])
