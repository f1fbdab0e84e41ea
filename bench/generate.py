"""Benchmark of text to mesh on the CPU with the toy prior: steps/s and seconds per stage, samples per ray before and
after occupancy culling, and the share of a step spent in the prior.

    python bench/generate.py [--steps-coarse 60] [--steps-refine 30] [--quality fast] [--prompt "a red cube"]

Prints a table; asserts nothing. The generate demo (`python -m engine generate-demo`, quality "fast") runs the
preset's full step counts; its wall time is the last row when `--demo` is given.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import torch  # noqa: E402

from csd_blender.protocol.generate_params import GenerateParams  # noqa: E402
from engine.tasks.generate import make_generate_job, run_generate  # noqa: E402


def _row(cells) -> str:
    return " | ".join(f"{c:>12}" if not isinstance(c, str) else f"{c:<12}" for c in cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-coarse", type=int, default=60)
    ap.add_argument("--steps-refine", type=int, default=30)
    ap.add_argument("--quality", default="fast")
    ap.add_argument("--prompt", default="a red cube")
    ap.add_argument("--demo", action="store_true", help="also time the generate demo's full preset run")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, toy prior")
    runs = [("short", dict(steps_coarse=args.steps_coarse, steps_refine=args.steps_refine))]
    if args.demo:
        runs.append(("demo preset", {}))
    print(_row(["run", "stage", "steps", "seconds", "steps/s", "prior share", "samples/ray"]))
    for name, over in runs:
        params = GenerateParams(prompt=args.prompt, quality=args.quality, device="cpu", **over)
        t0 = time.perf_counter()
        result = run_generate(make_generate_job(params, {}))
        wall = time.perf_counter() - t0
        st = result.stats
        c, r = st["coarse_seconds"], st["refine_seconds"]
        sec = st["seconds_per_stage"]
        before, after = st["samples_per_ray"]
        print(_row([name, "coarse", st["steps_coarse"], f"{sec['coarse']:.1f}",
                    f"{st['steps_coarse'] / max(sec['coarse'], 1e-9):.2f}",
                    f"{c['prior'] / max(sum(c.values()), 1e-9):.0%}", f"{before:.0f} → {after:.1f}"]))
        print(_row([name, "refine", st["steps_refine"], f"{sec['refine']:.1f}",
                    f"{st['steps_refine'] / max(sec['refine'], 1e-9):.2f}",
                    f"{r.get('prior', 0) / max(sum(r.values()), 1e-9):.0%}" if r else "-", "-"]))
        print(_row([name, "bake", "-", f"{sec['bake']:.1f}", "-", "-", "-"]))
        print(_row([name, "total", "-", f"{wall:.1f}", "-", "-", f"faces {st['faces']}"]))
        print(f"  coarse parts (s): {c}\n  refine parts (s): {r}")


if __name__ == "__main__":
    main()
