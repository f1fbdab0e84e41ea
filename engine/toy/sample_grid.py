"""Write a PNG grid of toy-prior samples, one row per prompt: `python -m engine.toy.sample_grid --out grid.png`."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..images import save_png, sheet
from ..priors.hub import TOY_PRIOR_DIR
from .sample import ddim_sample

logger = logging.getLogger(__name__)

# every colour, pattern and shape word at least once, then view rows (side vs overhead) and artefact rows
# (each phrase of the official negative prompt, and the whole prompt)
DEFAULT_PROMPTS = ("a red sphere", "a green cube", "a blue striped cylinder", "a yellow checkered cone",
                   "a purple dotted torus", "a orange capsule", "a white plain cube", "a black sphere",
                   "a blue torus", "a red striped cone",
                   "a green cylinder, side view", "a green cylinder, overhead view", "a orange cone, side view",
                   "a orange cone, overhead view",
                   "a green striped sphere, oversaturated color", "a blue cube, ugly", "a red dotted sphere, tiling",
                   "a yellow checkered cube, low quality", "a purple sphere, noisy",
                   "oversaturated color, ugly, tiling, low quality, noisy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/toy_samples.png"))
    parser.add_argument("--model", type=Path, default=TOY_PRIOR_DIR)
    parser.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS))
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of each 32×32 sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = [ddim_sample(args.model, p, args.per_prompt, args.steps, args.guidance_scale, args.seed + i).numpy()
            for i, p in enumerate(args.prompts)]
    grid = sheet(np.concatenate(rows), cols=args.per_prompt)
    grid = grid.repeat(args.scale, 0).repeat(args.scale, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(args.out, grid)
    logger.info("wrote %s (%d prompts × %d samples)", args.out, len(args.prompts), args.per_prompt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
