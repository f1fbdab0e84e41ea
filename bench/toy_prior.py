"""The bundled toy prior in numbers: UNet forward time (old vs new architecture) and DDIM sampling adherence.

    python bench/toy_prior.py [--prior engine/assets/toy_prior] [--baseline-rev 91bf027] [--samples 16]

Forward time: batch 1 and 4 at 32², CPU, for the prior's UNet and for the UNet config committed at
`--baseline-rev` (the v1 prior), random weights, median of 30 calls. Adherence (plain image statistics from
tests/fixtures/toy_adherence.py, never the model's opinion): share of `--samples` DDIM samples (25 steps, guidance 4) whose
object is in the prompt colour's family, for every colour word; median horizontal-band energy of striped vs plain
samples; share of samples whose silhouette the ground-truth-fitted classifier names as the prompt's shape.
Prints tables; asserts nothing. Also run by bench/guidance.py.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from engine.priors.hub import TOY_PRIOR_DIR  # noqa: E402
from engine.toy.sample import ddim_sample  # noqa: E402
from engine.toy.vocabulary import COLOURS  # noqa: E402


def _table(cols: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")


def _forward_ms(config: dict, batch: int, calls: int = 30) -> float:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(config).eval()
    x = torch.randn(batch, 3, 32, 32)
    cond = torch.randn(batch, 8, unet.config.cross_attention_dim)
    t = torch.full((batch,), 500)
    times = []
    with torch.no_grad():
        for _ in range(calls + 3):
            t0 = time.perf_counter()
            unet(x, t, cond)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[3:]))


def forward_table(prior: Path, baseline_rev: str) -> None:
    """UNet forward ms, batch 1 and 4, this prior's architecture vs the one committed at `baseline_rev`."""
    new = json.loads((prior / "unet" / "config.json").read_text())
    try:
        old = json.loads(subprocess.run(
            ["git", "show", f"{baseline_rev}:engine/assets/toy_prior/unet/config.json"], cwd=ROOT, check=True,
            capture_output=True, text=True).stdout)
    except (subprocess.CalledProcessError, FileNotFoundError):
        old = None
    rows = []
    for batch in (1, 4):
        t_new = _forward_ms(new, batch)
        t_old = _forward_ms(old, batch) if old else float("nan")
        rows.append([str(batch), f"{t_old:.2f}", f"{t_new:.2f}", f"{t_new / t_old:.2f}"])
    print(f"\nToy UNet forward on CPU ({torch.get_num_threads()} threads), baseline = {baseline_rev}")
    _table(["batch", "baseline ms", "this prior ms", "ratio"], rows)


def adherence_tables(prior: Path, n: int) -> None:
    """Colour, stripe and shape adherence of DDIM samples of `prior`."""
    from toy_adherence import TESTED_SHAPES, band_energy, colour_hit, shape_classifier

    shapes = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")
    rows = []
    for i, colour in enumerate(COLOURS):
        shape = shapes[i % len(shapes)]
        samples = ddim_sample(prior, f"a {colour} {shape}", n, steps=25, guidance_scale=4.0, seed=1).numpy()
        rows.append([f"a {colour} {shape}", f"{sum(colour_hit(s, colour) for s in samples)}/{n}"])
    print(f"\nDDIM colour adherence ({prior})")
    _table(["prompt", "in colour family"], rows)

    rows = []
    for colour in ("red", "green", "blue", "yellow"):
        e = {p: float(np.median([band_energy(s) for s in ddim_sample(
            prior, f"a {colour} {p} sphere", n, steps=25, seed=2).numpy()])) for p in ("striped", "plain")}
        rows.append([colour, f"{e['striped']:.4f}", f"{e['plain']:.4f}", f"{e['striped'] / max(e['plain'], 1e-9):.2f}"])
    print("\nDDIM stripes: median band energy")
    _table(["colour", "striped", "plain", "ratio"], rows)

    clf = shape_classifier()
    rows = []
    for i, shape in enumerate(TESTED_SHAPES):
        colour = ("red", "green", "blue", "yellow")[i]
        samples = ddim_sample(prior, f"a {colour} {shape}", n, steps=25, guidance_scale=4.0, seed=3).numpy()
        names = [clf.predict(s) for s in samples]
        rows.append([f"a {colour} {shape}", f"{sum(x == shape for x in names)}/{n}",
                     ", ".join(f"{k}:{names.count(k)}" for k in dict.fromkeys(x for x in names if x != shape))])
    print("\nDDIM shapes: named by the silhouette classifier")
    _table(["prompt", "named right", "named otherwise"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=TOY_PRIOR_DIR)
    parser.add_argument("--baseline-rev", default="91bf027", help="git revision holding the v1 toy prior")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--skip-adherence", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_forward:
        forward_table(args.prior, args.baseline_rev)
    if not args.skip_adherence:
        adherence_tables(args.prior, args.samples)


if __name__ == "__main__":
    main()
