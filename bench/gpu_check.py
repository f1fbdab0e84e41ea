"""GPU readiness and speed check: the CUDA tests, then full-size random-weight architectures timed the way the
tasks run them; one markdown table and one JSON file.

    bash bench/gpu_check.sh [--dry-run] [WHEELS=.whl] [OUT=$OUT or bench/out]    # the entry point (bench/README.md)
    python bench/gpu_check.py --out DIR [--dry-run] [--budget-s 420]

Sections, in order, each skipped (and listed as skipped) when the wall-time budget cannot hold it:
1. tests: `pytest -m gpu` over every test file that has the marker (CUDA-vs-CPU parity of the rasterizer,
   antialias and hash grid, and the other CUDA tests); the log goes to gpu_tests.txt.
2. texture: SD 1.5 UNet + depth ControlNet + VAE built from the published configs with random fp16 weights,
   channels-last, SDPA; texture jobs on Spot at 512² renders for batch 1 and 4, without and with
   `torch.compile` of the UNet: ms per step, ms of the step's batched UNet+ControlNet forward alone (its last
   call replayed), their ratio, the stage breakdown from a device-synchronised run, and peak memory.
3. sd21: SD 2.1-base UNet + VAE (v-prediction scheduler, the SD 2.x path) — guidance steps at 512², batch 1 and 4.
4. if: IF-I-XL stage I (bench/guidance.py's reconstruction) with T5-XXL-shaped random text embeddings (77 × 4096)
   — guidance steps at 64², batch 1 and 4.
5. generate: text to mesh's two stages (bench/generate.py's CUDA benchmark: IF-I-XL coarse, SD 2.1-base refine).
6. edit: the edit task (fit + Eq. 11 steps) with the SD 1.5 architecture at 512², batch 1.
7. scaling: texture step time against mesh faces, bake time against texture size, step time against batch
   (bench/texture.py's `scaling_rows`).
`--dry-run` runs the same code on the CPU with tiny widths, 64² renders and a step or two per row, and
`torch.compile(backend="eager")`, so the script is exercised by the test suite
(tests/engine/test_gpu_readiness.py) between GPU runs. Random weights: timings and memory only, no image quality.

This file runs the sections in order; beside it, gpu_check_plan.py (the plan and the budget), gpu_check_timing.py
(clocks, peak memory, the forward replayed alone), gpu_check_models.py (the random-weight architectures),
gpu_check_sections.py (what each section measures) and gpu_check_report.py (the table and the JSON).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from gpu_check_models import build_if, build_sd, configs, spot
from gpu_check_plan import Budget, CheckPlan
from gpu_check_report import Report, environment
from gpu_check_sections import (
    edit_section,
    generate_section,
    guidance_rows,
    run_gpu_tests,
    scaling_section,
    texture_section,
)
from gpu_check_timing import reset_peak

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "fixtures")]  # fixtures: bench/texture.py imports texture_stats


SECTIONS = ("tests", "texture", "sd21", "if", "generate", "edit", "scaling")


def run_section(name: str, need_s: float, budget: Budget, report: Report, fn) -> None:
    """Run one section if `need_s` fits the budget; an error is recorded (and fails the check) but the next
    section still runs.

    Args:
        name: section name.
        need_s: its expected cost.
        budget: the wall-time budget.
        report: the report.
        fn: the section, called without arguments.
    """
    if not budget.allows(need_s):
        report.skip(f"{name} (budget: {budget.used():.0f} of {budget.seconds:.0f} s used)")
        return
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the rest
        report.errors[name] = "".join(traceback.format_exception(exc))[-3000:]
        print(f"gpu_check: section {name} failed:\n{report.errors[name]}", file=sys.stderr, flush=True)
    report.section_s[name] = round(time.perf_counter() - t0, 1)
    print(f"gpu_check: {name} took {report.section_s[name]:.1f} s ({budget.used():.0f} s used)", flush=True)
    report.write()


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status (1 when a section raised)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="output folder (gpu_check.md, .json, gpu_tests.txt)"
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU (checks the script)")
    ap.add_argument(
        "--budget-s", type=float, default=420.0, help="wall-time budget; sections past it are skipped"
    )
    ap.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (a rerun of what a first run had to skip)",
    )
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    budget = Budget(args.budget_s)
    plan = CheckPlan.make(args.dry_run)
    report = Report(out=args.out, env=environment(plan))
    report.write()
    full = not plan.dry_run
    cfg, mesh, models = configs(plan), spot(), {}

    def sd15():
        if "sd" not in models:
            models["sd"] = build_sd(plan, cfg["sd15"], cfg["vae"], controlnet=True, prediction_type="epsilon",
                                    name="sd15-arch+depth")
        return models["sd"]

    def sd21() -> None:
        prior = build_sd(plan, cfg["sd21"], cfg["vae"], controlnet=False, prediction_type="v_prediction",
                         name="sd21-base-arch")
        guidance_rows(plan, budget, report, "sd21", "SD 2.1-base arch, v-prediction", prior, "csd-sd-refine")

    def if_stage() -> None:
        guidance_rows(plan, budget, report, "if", "IF-I-XL stage I arch", build_if(plan, cfg["if"]), "csd-if")

    sections = {  # name → (seconds it needs on a GPU, the section)
        "tests": (30, lambda: run_gpu_tests(plan, budget, report)),
        "texture": (60, lambda: texture_section(plan, budget, report, sd15(), mesh)),
        "sd21": (40, sd21),
        "if": (60, if_stage),
        "generate": (100, lambda: generate_section(plan, report)),
        "edit": (45, lambda: edit_section(plan, report, sd15(), mesh)),
        "scaling": (60, lambda: scaling_section(plan, report, sd15())),
    }
    for name in SECTIONS:
        if name in chosen:
            reset_peak(plan.device)
            need, fn = sections[name]
            run_section(name, need if full else 1, budget, report, fn)
    report.write(wall_s=budget.used())
    print(report.markdown(budget.used()), flush=True)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
