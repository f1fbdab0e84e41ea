"""`python -m engine edit`: change a textured mesh file from text (target and edit prompts, paper Eq. 11).

Writes the texture command's files (textured.glb, textured.obj/.mtl, texture.png, turntable.png, job.json) plus
before_after.png (the original's turntable above the edited one). The input files are only read.
"""
from __future__ import annotations

import argparse
import logging
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


def add_edit_parser(subparsers) -> None:
    """Register `edit`: edit a textured mesh file from a target and an edit prompt."""
    p = subparsers.add_parser("edit", help="edit a textured mesh from text: target and edit prompts (Eq. 11)")
    p.add_argument("--mesh", required=True, help="input mesh with UVs: .glb/.gltf or .obj (+ .mtl)")
    p.add_argument("--target", required=True, help='what the object should become, e.g. "a blue striped sphere"')
    p.add_argument("--edit", required=True, help='what it is now / the attribute to change, "a red striped sphere"')
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--texture", default=None, help="base-colour image (default: the mesh file's own texture)")
    p.add_argument("--strength", type=float, default=1.0, help="ω1: pull towards the target prompt (0-4)")
    p.add_argument("--omega2", type=float, default=1.0, help="ω2: push away from the edit prompt (0-4; 0 = plain "
                                                             "target-prompt CSD)")
    p.add_argument("--preserve", type=float, default=0.35,
                   help="pull back towards the original renders, relative to the edit direction (0 = off)")
    p.add_argument("--geometry", action="store_true",
                   help="let the surface move too (DMTet from the mesh's signed distance): a new mesh with new UVs")
    p.add_argument("--model", default="toy", help="toy | hub id | local folder")
    p.add_argument("--quality", default="balanced", choices=("fast", "balanced", "best"))
    p.add_argument("--steps", type=int, default=None, help="edit steps (default: from --quality)")
    p.add_argument("--fit-psnr", type=float, default=35.0, help="reconstruction target in dB")
    p.add_argument("--fit-max-steps", type=int, default=1500, help="reconstruction steps at most")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=int, default=None, help="square output size (default: the input's size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--up", default="auto", choices=("auto", "y", "z"),
                   help="up axis of the mesh file (auto: Y for OBJ/glTF, Z for PLY/STL, as Blender's importers)")
    p.add_argument("--progress-every", type=int, default=10)
    add_mask_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def params_from_args(args: argparse.Namespace):
    """The `edit` command line as EditParams (not yet validated)."""
    from csd_blender.protocol.params import EditParams

    return EditParams(
        target_prompt=args.target, edit_prompt=args.edit, strength=args.strength, omega2=args.omega2,
        preserve=args.preserve, geometry=args.geometry, model=args.model, quality=args.quality, steps=args.steps,
        fit_psnr=args.fit_psnr, fit_max_steps=args.fit_max_steps, batch_size=args.batch_size,
        learning_rate=args.lr, seed=args.seed, texture_size=args.texture_size, device=args.device,
        progress_every=args.progress_every, mask_border=args.mask_border,
    )


def _reproduce_argv(args: argparse.Namespace, params: dict) -> list[str]:
    return reproduce_argv("edit", {
        "--mesh": Path(args.mesh).resolve(), "--target": params["target_prompt"], "--edit": params["edit_prompt"],
        "--out": args.out, "--strength": params["strength"], "--omega2": params["omega2"],
        "--preserve": params["preserve"], "--model": params["model"], "--quality": params["quality"],
        "--steps": params["steps"], "--fit-psnr": params["fit_psnr"], "--fit-max-steps": params["fit_max_steps"],
        "--batch-size": params["batch_size"], "--lr": params["learning_rate"], "--seed": params["seed"],
        "--device": params["device"], "--up": args.up, "--texture": args.texture and Path(args.texture).resolve(),
        "--texture-size": params["texture_size"], "--geometry": params["geometry"],
        "--mask": args.mask and Path(args.mask).resolve(), "--mask-border": args.mask and params["mask_border"],
    })


def run_edit_files(args: argparse.Namespace, write_dir: str | Path | None = None) -> dict[str, Path]:
    """Edit `args.mesh` and write the texture command's files plus before_after.png.

    Args:
        args: the parsed `edit` command line.
        write_dir: write the files here instead of `args.out` (job.json still names `args.out`).
    """
    from ..images import save_png
    from ..mesh import load_mesh, load_texture_image
    from ..mesh.axes import file_up_axis
    from ..mesh.material import load_base_color
    from ..tasks.common.outputs import write_job_record, write_textured_mesh
    from ..tasks.edit import make_edit_job, run_edit

    params = params_from_args(args).validate()
    require_downloaded(job_sources(params))  # before any work: jobs never download (`models download`)
    up = file_up_axis(args.mesh, args.up)
    mesh = load_mesh(args.mesh, up=up)
    texture = load_texture_image(args.texture) if args.texture else load_base_color(args.mesh)
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces.astype(np.int32)}
    if mesh.uvs is not None:
        arrays["uvs"] = mesh.uvs
    if texture is not None:
        arrays["texture"] = texture
    arrays.update(load_mask(args.mask, len(mesh.faces)))
    job = make_edit_job(params, arrays)
    out = out_dir(args, write_dir)
    result, seconds = run_with_bar(run_edit, job,
                                   ProgressBar("edit", quiet=args.quiet, bar_stages=("fitting", "optimising")))
    files = write_textured_mesh(out, result.mesh, result.texture, result.turntable, obj_up=up)
    files["before_after"] = save_png(out / "before_after.png", result.before_after)
    record = mesh_record(args.mesh, up, len(job.mesh.faces),
                         texture=str(Path(args.texture).resolve()) if args.texture else "from the mesh file",
                         texture_size=list(job.texture.shape), **mask_record(args.mask))
    write_job_record(files["job"], "edit", result.params, result.stats, _reproduce_argv(args, result.params),
                     seconds, mesh=record)
    return files


COMMAND = JobCommand("edit", add_edit_parser, params_from_args, run_edit_files)
