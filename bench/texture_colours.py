"""Texture colour cleanliness on Spot with the toy prior: off-colour share per colour and pattern, and the paper's
ablation (official negative prompt with annealed ω2 vs none) and the remedies tried, side by side.

    python bench/texture_colours.py [--table all|ablation] [--steps 150] [--seeds 0 1] [--variants paper,...]

For "a {colour} {pattern} sphere" on Spot (quality fast), the turntable's object pixels (8 views, 96²) give:
off-colour share (chromatic pixels in another colour family; neutral pattern colours never count) and in-family-or-
neutral share. Variants: `paper` (csd-toy as shipped: view prompts, official negative prompt, annealed ω2),
`no-negative` (the same with an empty negative prompt), `anchor` (paper + a generative anchor λ·(ε(y) − ε)), `sds`.
Prints markdown tables; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "fixtures")]

from texture_stats import family_share, object_mask, off_colour_share  # noqa: E402

from csd_blender.protocol.params import TextureParams  # noqa: E402
from engine.commands.texture import DEMO_MESH  # noqa: E402
from engine.mesh import load_mesh  # noqa: E402
from engine.priors import load_prior  # noqa: E402
from engine.tasks.texture import make_texture_job, result_views, run_texture  # noqa: E402
from engine.toy.vocabulary import COLOURS, PATTERNS  # noqa: E402

VARIANTS = {
    "paper": {},
    "no-negative": {"guidance_overrides": {"negative_prompt": ""}},
    "anchor": {"guidance_overrides": {"anchor": 0.3}},
    "sds": {"guidance": "sds"},
}


def measure(colour: str, pattern: str, variant: str, steps: int, seed: int, prior, mesh) -> dict:
    """One texture job on Spot; its turntable's colour statistics."""
    extra = dict(VARIANTS[variant])
    params = TextureParams(prompt=f"a {colour} {pattern} sphere", quality="fast", steps=steps, seed=seed,
                           device="cpu", **extra).validate()
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces.astype(np.int32), "uvs": mesh.uvs}
    t0 = time.perf_counter()
    result = run_texture(make_texture_job(params, arrays), prior=prior)
    views = result_views(result, size=96)
    pixels = np.concatenate([v[object_mask(v)][:, :3] for v in views])
    return {"off": off_colour_share(pixels, colour), "ok": family_share(pixels, colour, neutral_ok=True),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=("all", "ablation"), default="ablation")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", default="paper,no-negative")
    parser.add_argument("--colours", default=",".join(COLOURS))
    parser.add_argument("--patterns", default="striped")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prior, mesh = load_prior("toy"), load_mesh(DEMO_MESH, up="y")
    colours = args.colours.split(",")
    patterns = list(PATTERNS) if args.table == "all" else args.patterns.split(",")
    variants = args.variants.split(",")
    print(f"| colour | pattern | {' | '.join(f'{v} off-colour | {v} in family or neutral' for v in variants)} |")
    print("|---|---|" + "---|---|" * len(variants))
    for colour in colours:
        for pattern in patterns:
            cells = []
            for variant in variants:
                rows = [measure(colour, pattern, variant, args.steps, s, prior, mesh) for s in args.seeds]
                cells += [f"{np.mean([r['off'] for r in rows]):.2f}", f"{np.mean([r['ok'] for r in rows]):.2f}"]
            print(f"| {colour} | {pattern} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
