"""The bundled toy prior in numbers: UNet forward time (this prior vs v2) and DDIM sampling adherence — colour,
stripe, shape, view and artefact words — and the paper's ablation on Spot.

    python bench/toy_prior.py [--prior engine/assets/toy_prior] [--baseline-rev e19dcb8] [--samples 16] [--ablation]

Forward time: batch 1 and 4 at 32², CPU, this prior's UNet and the one committed at `--baseline-rev` (v2), their
own weights, median of 30 calls. Adherence (plain image statistics from tests/fixtures/toy_adherence.py, never the
model's opinion), `--samples` DDIM samples (25 steps, guidance 4), this prior beside v2 where v2 knows the words:
  - colour: samples whose object is in the prompt colour's family, for every colour word;
  - stripes: median horizontal-band energy of striped vs plain samples;
  - shape: samples whose silhouette the ground-truth-fitted classifier names as the prompt's shape;
  - view: cone and cylinder, "…, overhead view" vs "…, side view" from the same noise: pairs where the overhead
    sample's silhouette is rounder (lower `non_roundness`), and the medians;
  - artefact: four prompts × four samples with and without ", oversaturated color" (mean saturation) and ", noisy"
    (high-frequency energy), from the same noise: pairs where the word raised the statistic.
`--ablation` adds bench/texture_colours.py's ablation table (Spot, "a {colour} striped sphere", 8 colours, 150
steps, 2 seeds; official negative prompt vs none). Prints tables; asserts nothing. Also run by bench/guidance.py.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures")]

from engine.priors.hub import TOY_PRIOR_DIR  # noqa: E402
from engine.toy.sample import ddim_sample  # noqa: E402
from engine.toy.vocabulary import COLOURS  # noqa: E402

V2_REV = "e19dcb8"   # the commit of the toy prior v2 weights
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")
VIEW_CASES = (("cone", "orange"), ("cylinder", "green"))
ARTEFACT_PROMPTS = ("a red striped sphere", "a green cube", "a blue checkered cylinder", "a yellow torus")


def _table(cols: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")


def checkout_prior(rev: str, dest: Path) -> Path | None:
    """The toy prior folder committed at `rev`, written under `dest` (None when git or the revision is missing)."""
    try:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "engine/assets/toy_prior"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.split()
        for name in names:
            out = dest / Path(name).relative_to("engine/assets/toy_prior")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True,
                                           capture_output=True).stdout)
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return None
    return dest if names else None


def _forward_ms(folder: Path, batch: int, calls: int = 30) -> float:
    from engine.toy.model import load_networks

    unet, _ = load_networks(folder)
    unet.eval()
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


def forward_table(prior: Path, v2: Path | None) -> None:
    """UNet forward ms, batch 1 and 4, this prior vs v2."""
    rows = []
    for batch in (1, 4):
        t_new = _forward_ms(prior, batch)
        t_old = _forward_ms(v2, batch) if v2 else float("nan")
        rows.append([str(batch), f"{t_old:.2f}", f"{t_new:.2f}", f"{t_new / t_old:.2f}"])
    print(f"\nToy UNet forward on CPU ({torch.get_num_threads()} thread(s)), v2 = {V2_REV}")
    _table(["batch", "v2 ms", "this prior ms", "ratio"], rows)


def _samples(prior: Path, prompt: str, n: int, seed: int) -> np.ndarray:
    return ddim_sample(prior, prompt, n, steps=25, guidance_scale=4.0, seed=seed).numpy()


def adherence_tables(prior: Path, v2: Path | None, n: int) -> None:
    """Colour, stripe, shape, view and artefact adherence of DDIM samples of `prior` (and of v2 where it applies)."""
    from toy_adherence import (
        TESTED_SHAPES,
        band_energy,
        colour_hit,
        high_frequency_energy,
        mean_saturation,
        non_roundness,
        shape_classifier,
    )

    priors = {"this": prior, **({"v2": v2} if v2 else {})}
    rows = []
    for i, colour in enumerate(COLOURS):
        prompt = f"a {colour} {SHAPES[i % len(SHAPES)]}"
        rows.append([prompt, *(f"{sum(colour_hit(s, colour) for s in _samples(p, prompt, n, 1))}/{n}"
                               for p in priors.values())])
    print(f"\nDDIM colour adherence ({prior}; seed 1)")
    _table(["prompt", *(f"{k}: in colour family" for k in priors)], rows)

    rows = []
    for colour in ("red", "green", "blue", "yellow"):
        e = {p: float(np.median([band_energy(s) for s in ddim_sample(
            prior, f"a {colour} {p} sphere", n, steps=25, seed=2).numpy()])) for p in ("striped", "plain")}
        rows.append([colour, f"{e['striped']:.4f}", f"{e['plain']:.4f}", f"{e['striped'] / max(e['plain'], 1e-9):.2f}"])
    print("\nDDIM stripes: median band energy (guidance 4, seed 2)")
    _table(["colour", "striped", "plain", "ratio"], rows)

    clf = shape_classifier()
    rows = []
    for i, shape in enumerate(TESTED_SHAPES):
        colour = ("red", "green", "blue", "yellow")[i]
        names = [clf.predict(s) for s in _samples(prior, f"a {colour} {shape}", n, 3)]
        rows.append([f"a {colour} {shape}", f"{sum(x == shape for x in names)}/{n}",
                     ", ".join(f"{k}:{names.count(k)}" for k in dict.fromkeys(x for x in names if x != shape))])
    print("\nDDIM shapes: named by the silhouette classifier (seed 3)")
    _table(["prompt", "named right", "named otherwise"], rows)

    rows = []
    for shape, colour in VIEW_CASES:
        over = [non_roundness(s) for s in _samples(prior, f"a {colour} {shape}, overhead view", n, 4)]
        side = [non_roundness(s) for s in _samples(prior, f"a {colour} {shape}, side view", n, 4)]
        plain = [non_roundness(s) for s in _samples(prior, f"a {colour} {shape}", n, 4)]
        rows.append([f"a {colour} {shape}", f"{sum(o < s for o, s in zip(over, side))}/{n}",
                     f"{np.median(over):.3f}", f"{np.median(side):.3f}", f"{np.median(plain):.3f}"])
    print("\nDDIM view words: non-roundness (silhouette roundness + |taper|/10; ground truth: side 0.17-0.32, "
          "overhead 0.06-0.07), seed 4")
    _table(["prompt", "overhead rounder (pairs)", "overhead median", "side median", "no view word median"], rows)

    rows = []
    for phrase, stat in (("oversaturated color", mean_saturation), ("noisy", high_frequency_energy)):
        pairs = []
        for i, prompt in enumerate(ARTEFACT_PROMPTS):
            a, b = _samples(prior, f"{prompt}, {phrase}", 4, 10 + i), _samples(prior, prompt, 4, 10 + i)
            pairs += [(stat(x), stat(y)) for x, y in zip(a, b)]
        rows.append([f"…, {phrase}", stat.__name__, f"{sum(x > y for x, y in pairs)}/{len(pairs)}",
                     f"{np.median([x for x, _ in pairs]):.3f}", f"{np.median([y for _, y in pairs]):.3f}"])
    print("\nDDIM artefact words: the statistic with vs without the phrase (4 prompts × 4 samples, seeds 10-13)")
    _table(["prompt", "statistic", "raised (pairs)", "with median", "without median"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=TOY_PRIOR_DIR)
    parser.add_argument("--baseline-rev", default=V2_REV, help="git revision holding the v2 toy prior")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--skip-adherence", action="store_true")
    parser.add_argument("--ablation", action="store_true", help="also the ablation table on Spot (minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        v2 = checkout_prior(args.baseline_rev, Path(tmp) / "v2")
        if not args.skip_forward:
            forward_table(args.prior, v2)
        if not args.skip_adherence:
            adherence_tables(args.prior, v2, args.samples)
    if args.ablation:
        import texture_colours

        print("\nThe paper's ablation on Spot (bench/texture_colours.py --table ablation --variants shipped,paper,"
              "no-negative)")
        texture_colours.main(["--table", "ablation", "--variants", "shipped,paper,no-negative"])


if __name__ == "__main__":
    main()
