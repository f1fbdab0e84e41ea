"""Texture colour cleanliness on Spot with the toy prior: off-colour share per colour and pattern, and the paper's
ablation (official negative prompt with annealed ω2 vs none) and the remedies tried, side by side.

    python bench/texture_colours.py [--table all|ablation] [--steps 150] [--seeds 0 1] [--variants shipped,...]

For "a {colour} {pattern} sphere" on Spot (quality fast), the turntable's object pixels (8 views, 96²;
tests/fixtures/spot_colours.py, the same measure as tests/engine/test_toy_recipe.py) give: off-colour share
(chromatic pixels in another colour family; neutral pattern colours never count) and in-family-or-neutral share.
Variants (each a guidance setting of csd-toy, whose defaults are the official recipe: view prompts, the official
negative prompt, ω2 annealed 0 → 1 over the first half of the run):
  shipped       csd-toy as shipped (engine/guidance/presets.py)
  paper         the paper's plain CSD with that recipe (anchor 0, parallel 1)
  no-negative   paper with an empty negative prompt (the ablation's other arm)
  anchor:L      paper + a generative anchor L·(ε(y) − ε)
  anchor-decay:L  the anchor L decaying linearly to 0 over the run
  apg:E         paper with the classifier direction's component along ε(y) scaled by E (APG's projection)
  anchor+apg:L:E  both
  t-drop        paper with csd-if's late t_max drop (0.98 → 0.5 at mid-run) that csd-toy leaves out
  sds           SDS (threestudio IF scale 20 = diffusers 21)
Prints markdown tables (a mean row last); asserts nothing.
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

from spot_colours import colour_stats, spot_pixels  # noqa: E402

from engine.priors import load_prior  # noqa: E402
from engine.toy.vocabulary import COLOURS, PATTERNS  # noqa: E402

PAPER = {"anchor": 0.0, "parallel": 1.0}


def variant_settings(name: str, steps: int) -> tuple[str, dict]:
    """(guidance preset, overrides) of a variant name (see the module docstring)."""
    kind, _, arg = name.partition(":")
    if kind == "shipped":
        return "csd-toy", {}
    if kind == "paper":
        return "csd-toy", dict(PAPER)
    if kind == "no-negative":
        return "csd-toy", {**PAPER, "negative_prompt": ""}
    if kind == "anchor":
        return "csd-toy", {**PAPER, "anchor": float(arg)}
    if kind == "anchor-decay":
        return "csd-toy", {**PAPER, "anchor": [0, float(arg), 0.0, steps]}
    if kind == "apg":
        return "csd-toy", {**PAPER, "parallel": float(arg)}
    if kind == "anchor+apg":
        lam, eta = arg.split(":")
        return "csd-toy", {"anchor": float(lam), "parallel": float(eta)}
    if kind == "t-drop":
        half = steps // 2
        return "csd-toy", {**PAPER, "t_max": [half, 0.98, 0.5, half + 1]}
    if kind == "sds":
        return "sds-sd", {"guidance_scale": 21.0}
    raise SystemExit(f"unknown variant {name!r}")


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
    prior = load_prior("toy")
    colours = args.colours.split(",")
    patterns = list(PATTERNS) if args.table == "all" else args.patterns.split(",")
    variants = args.variants.split(",")
    print(f"Spot, quality fast, {args.steps} steps, seeds {args.seeds}; cells: off-colour / in family or neutral")
    print(f"| colour | pattern | {' | '.join(variants)} |")
    print("|---|---|" + "---|" * len(variants))
    sums = {v: [] for v in variants}
    t0 = time.perf_counter()
    for colour in colours:
        for pattern in patterns:
            cells = []
            for variant in variants:
                guidance, overrides = variant_settings(variant, args.steps)
                rows = [colour_stats(spot_pixels(f"a {colour} {pattern} sphere", s, prior, guidance, overrides,
                                                 steps=args.steps), colour) for s in args.seeds]
                off, ok = np.mean([r["off"] for r in rows]), np.mean([r["ok"] for r in rows])
                sums[variant].append((off, ok))
                cells.append(f"{off:.2f} / {ok:.2f}")
            print(f"| {colour} | {pattern} | {' | '.join(cells)} |", flush=True)
    means = [f"{np.mean([x[0] for x in sums[v]]):.2f} / {np.mean([x[1] for x in sums[v]]):.2f}" for v in variants]
    worst = [f"{max(x[0] for x in sums[v]):.2f} / {min(x[1] for x in sums[v]):.2f}" for v in variants]
    print(f"| **mean** | | {' | '.join(means)} |")
    print(f"| **worst** | | {' | '.join(worst)} |")
    print(f"\n({time.perf_counter() - t0:.0f} s, {torch.get_num_threads()} thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
