"""Command-line jobs on files: `texture` (mesh in, textured mesh + PNGs out) and `demo` (the bundled default).

Inputs the engine cannot use end with one line `error: [code] message` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np

from ..models.store import job_sources, require_downloaded
from .common import (
    JobCommand,
    ProgressBar,
    add_mask_options,
    load_mask,
    mask_record,
    mesh_record,
    out_dir,
    reproduce_argv,
    run_with_bar,
)

logger = logging.getLogger(__name__)

DEMO_MESH = Path(__file__).resolve().parents[1] / "assets" / "meshes" / "spot.obj"
DEMO_PROMPT = "a blue striped sphere"


def add_texture_parser(subparsers) -> None:
    """Register `texture`: texture a mesh file from a prompt."""
    p = subparsers.add_parser("texture", help="texture a mesh from a text prompt (mesh file in, textured mesh out)")
    p.add_argument("--mesh", required=True, help="input mesh: .obj, .ply, .glb, .gltf or .stl")
    p.add_argument("--prompt", required=True, help='e.g. "a red striped sphere" (toy prior vocabulary)')
    p.add_argument("--out", required=True, help="output folder")
    _add_job_options(p)
    add_mask_options(p)
    p.add_argument("--texture", default=None,
                   help="with --mask: the object's current texture, kept outside the region (default: the mesh "
                        "file's own; without one the result is RGBA, transparent outside the region)")


def add_demo_parser(subparsers) -> None:
    """Register `demo`: texture the bundled Spot mesh with the toy prior on the CPU."""
    p = subparsers.add_parser("demo", help="texture the bundled Spot mesh with the bundled toy prior (CPU)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--prompt", default=DEMO_PROMPT)
    _add_job_options(p, demo=True)
    p.set_defaults(mesh=str(DEMO_MESH))


def _add_job_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    p.add_argument("--negative", default="", help="negative prompt (CSD pushes away from it)")
    p.add_argument("--model", default="toy", help="toy | hub id (e.g. runwayml/stable-diffusion-v1-5) | local folder")
    p.add_argument("--controlnet", action="append", default=[], metavar="KIND[=SOURCE]",
                   help="ControlNet conditioning (Stable Diffusion 1.5), repeatable or comma-separated: depth, "
                        "normal, canny, each optionally =hub id or local folder (depth=/models/cn-depth)")
    p.add_argument("--quality", default="balanced", choices=("fast", "balanced", "best"))
    p.add_argument("--guidance", default="auto", help="guidance preset (auto, csd-if, csd-sd-refine, sds-sd, ...)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: from --quality)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=int, default=None)
    p.add_argument("--device", default="cpu" if demo else "auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--up", default="auto", choices=("auto", "y", "z"),
                   help="up axis of the mesh file (auto: Y for OBJ/glTF, Z for PLY/STL, as Blender's importers)")
    p.add_argument("--cameras", default=None, help="JSON camera rig: {\"c2w\": [N×4×4], \"intrinsics\": [N×6]}")
    p.add_argument("--progress-every", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def split_controlnet_arg(text: str) -> list[str]:
    """One --controlnet value as ControlNet specs: "depth=/a,b/cn,canny" → ["depth=/a,b/cn", "canny"].

    A comma separates entries only where a ControlNet kind follows it (alone or with "="), so folder paths
    that contain commas survive.

    Args:
        text: the option's value.
    """
    from csd_blender.protocol.params import CONTROLNET_KINDS

    kinds = "|".join(CONTROLNET_KINDS)
    parts = re.split(rf",\s*(?=(?:{kinds})\s*(?:=|,|$))", text)
    return [part.strip() for part in parts if part.strip()]


def params_from_args(args: argparse.Namespace):
    """The `texture` command line as TextureParams (not yet validated)."""
    from csd_blender.protocol.params import TextureParams

    return TextureParams(
        prompt=args.prompt, negative_prompt=args.negative, model=args.model,
        controlnets=[spec for arg in args.controlnet for spec in split_controlnet_arg(arg)], quality=args.quality,
        guidance=args.guidance, steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        texture_size=args.texture_size, seed=args.seed, device=args.device, progress_every=args.progress_every,
        mask_border=getattr(args, "mask_border", 4),
    )


def _load_rig(path: str | None) -> dict[str, np.ndarray]:
    if not path:
        return {}
    from ..errors import RequestError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {"c2w": np.asarray(data["c2w"], dtype=np.float32),
                "intrinsics": np.asarray(data["intrinsics"], dtype=np.float32)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RequestError("cameras", f"cannot read camera rig {path}: {exc}") from exc


def _region_arrays(args: argparse.Namespace, n_faces: int) -> dict[str, np.ndarray]:
    """`--mask` as the region array, with the texture kept outside it (`--texture`, else the mesh file's own)."""
    region = load_mask(getattr(args, "mask", None), n_faces)
    if not region:
        return {}
    from ..mesh import load_texture_image
    from ..mesh.material import load_base_color

    texture = load_texture_image(args.texture) if args.texture else load_base_color(args.mesh)
    return {**region, **({"texture": texture} if texture is not None else {})}


def run_texture_files(args: argparse.Namespace, write_dir: str | Path | None = None) -> dict[str, Path]:
    """Texture `args.mesh` and write textured.glb, textured.obj/.mtl, texture.png, turntable.png, job.json.

    Args:
        args: the parsed `texture` command line.
        write_dir: write the files here instead of `args.out` (job.json still names `args.out`: a batch worker
            writes into a scratch folder and the batch moves the files to `args.out`).
    """
    from ..mesh import load_mesh
    from ..mesh.axes import file_up_axis
    from ..tasks.common.outputs import write_job_record, write_textured_mesh
    from ..tasks.texture import make_texture_job, run_texture

    params = params_from_args(args).validate()
    require_downloaded(job_sources(params))  # before any work: jobs never download (`models download`)
    up = file_up_axis(args.mesh, args.up)
    mesh = load_mesh(args.mesh, up=up)
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces.astype(np.int32), **_load_rig(args.cameras)}
    if mesh.uvs is not None:
        arrays["uvs"] = mesh.uvs
    arrays.update(_region_arrays(args, len(mesh.faces)))
    job = make_texture_job(params, arrays)
    out = out_dir(args, write_dir)
    result, seconds = run_with_bar(run_texture, job, ProgressBar("texture", quiet=args.quiet))
    files = write_textured_mesh(out, job.mesh.with_uvs(result.uvs), result.texture, result.turntable,
                                obj_up=up)
    record = mesh_record(args.mesh, up, len(job.mesh.faces), unwrapped=result.unwrapped,
                         **mask_record(getattr(args, "mask", None)))
    write_job_record(files["job"], "texture", result.params, result.stats, _reproduce_argv(args, result.params),
                     seconds, mesh=record, cameras=args.cameras)
    return files


def _reproduce_argv(args: argparse.Namespace, params: dict) -> list[str]:
    return reproduce_argv("texture", {
        "--mesh": Path(args.mesh).resolve(), "--prompt": params["prompt"], "--out": args.out,
        "--model": params["model"], "--quality": params["quality"], "--guidance": params["guidance"],
        "--steps": params["steps"], "--batch-size": params["batch_size"], "--lr": params["learning_rate"],
        "--seed": params["seed"], "--texture-size": params["texture_size"], "--device": params["device"],
        "--up": args.up, "--negative": params["negative_prompt"], "--controlnet": params["controlnets"],
        "--cameras": args.cameras, "--mask": getattr(args, "mask", None) and Path(args.mask).resolve(),
        "--mask-border": getattr(args, "mask", None) and params["mask_border"],
        "--texture": getattr(args, "texture", None) and Path(args.texture).resolve(),
    })


COMMAND = JobCommand("texture", add_texture_parser, params_from_args, run_texture_files)
