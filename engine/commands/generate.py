"""Command-line text to mesh: `generate` (prompt in, textured mesh out) and `generate-demo` (toy prior, CPU).

Writes what `texture` writes: generated.glb, generated.obj/.mtl + texture.png, turntable.png and job.json with
the command that reproduces the run. Inputs the engine cannot use end with one `error: [code] message` line,
exit 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..models.store import job_sources, require_downloaded
from .common import JobCommand, ProgressBar, out_dir, reproduce_argv, run_with_bar

logger = logging.getLogger(__name__)

GENERATE_DEMO_PROMPT = "a red cube"


def add_generate_parser(subparsers) -> None:
    """Register `generate`: a textured mesh from a text prompt."""
    p = subparsers.add_parser(
        "generate", help="text to mesh: a textured mesh from a prompt (CSD, NeRF then DMTet)"
    )
    p.add_argument("--prompt", required=True, help='e.g. "a red cube" (toy prior vocabulary)')
    p.add_argument("--out", required=True, help="output folder")
    _add_generate_options(p)


def add_generate_demo_parser(subparsers) -> None:
    """Register `generate-demo`: text to mesh with the bundled toy prior on the CPU."""
    p = subparsers.add_parser(
        "generate-demo", help="text to mesh with the bundled toy prior (CPU, a few minutes)"
    )
    p.add_argument("--out", default="generate_demo_out", help="output folder (default: generate_demo_out)")
    p.add_argument("--prompt", default=GENERATE_DEMO_PROMPT)
    _add_generate_options(p, demo=True)


def _add_generate_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    p.add_argument("--negative", default="", help="negative prompt (CSD pushes away from it)")
    p.add_argument("--model", default="toy", help="toy | hub id (e.g. DeepFloyd/IF-I-XL-v1.0) | local folder")
    p.add_argument("--refine-model", default="", help="prior of the refine stage (default: --model)")
    p.add_argument("--quality", default="fast" if demo else "balanced", choices=("fast", "balanced", "best"))
    p.add_argument(
        "--steps-coarse", type=int, default=None, help="coarse NeRF steps (default: from --quality)"
    )
    p.add_argument(
        "--steps-refine", type=int, default=None, help="mesh refinement steps (default: from --quality)"
    )
    p.add_argument(
        "--refine",
        default="geometry",
        choices=("geometry", "texture", "none"),
        help="refine the mesh and its texture, the texture only, or neither (marching cubes)",
    )
    p.add_argument("--face-budget", type=int, default=20_000)
    p.add_argument("--tet-resolution", type=int, default=None)
    p.add_argument(
        "--isosurface-threshold",
        type=float,
        default=None,
        help="coarse density at the surface (default: from --quality; official 10)",
    )
    p.add_argument("--texture-size", type=int, default=None)
    p.add_argument("--size", type=float, default=1.0, help="longest side of the result in metres")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu" if demo else "auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--progress-every", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def params_from_args(args: argparse.Namespace):
    """The `generate` command line as GenerateParams (not yet validated)."""
    from csd_blender.protocol.params import GenerateParams

    return GenerateParams(
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        refine_model=args.refine_model,
        quality=args.quality,
        refine=args.refine,
        steps_coarse=args.steps_coarse,
        steps_refine=args.steps_refine,
        face_budget=args.face_budget,
        tet_resolution=args.tet_resolution,
        isosurface_threshold=args.isosurface_threshold,
        texture_size=args.texture_size,
        size=args.size,
        learning_rate=args.lr,
        seed=args.seed,
        device=args.device,
        progress_every=args.progress_every,
    )


def _reproduce_argv(args: argparse.Namespace, params: dict) -> list[str]:
    return reproduce_argv("generate", {
        "--prompt": params["prompt"], "--out": args.out, "--model": params["model"], "--quality": params["quality"],
        "--refine": params["refine"], "--steps-coarse": params["steps_coarse"],
        "--steps-refine": params["steps_refine"], "--face-budget": params["face_budget"],
        "--tet-resolution": params["tet_resolution"], "--isosurface-threshold": params["isosurface_threshold"],
        "--texture-size": params["texture_size"], "--size": params["size"], "--lr": params["learning_rate"],
        "--seed": params["seed"], "--device": params["device"], "--negative": params["negative_prompt"],
        "--refine-model": params["refine_model"],
    })


def run_generate_files(args: argparse.Namespace, write_dir: str | Path | None = None) -> dict[str, Path]:
    """Generate from `args.prompt`; write generated.glb/.obj/.mtl, texture.png, turntable.png, job.json.

    Args:
        args: the parsed `generate` command line.
        write_dir: write the files here instead of `args.out` (job.json still names `args.out`).
    """
    from ..tasks.common.outputs import write_job_record, write_textured_mesh
    from ..tasks.generate import make_generate_job, run_generate

    params = params_from_args(args).validate()
    require_downloaded(job_sources(params))  # before any work: jobs never download (`models download`)
    job = make_generate_job(params, {})
    out = out_dir(args, write_dir)
    result, seconds = run_with_bar(run_generate, job,
                                   ProgressBar("generate", quiet=args.quiet, bar_stages=("coarse", "refine")))
    files = write_textured_mesh(
        out, result.mesh, result.texture, result.turntable, obj_up="z", name="generated"
    )
    write_job_record(
        files["job"],
        "generate",
        result.params,
        result.stats,
        _reproduce_argv(args, result.params),
        seconds,
    )
    return files


COMMAND = JobCommand("generate", add_generate_parser, params_from_args, run_generate_files)
