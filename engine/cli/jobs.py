"""The job commands on the command line: each runs its `run_files`, prints the output paths (and, for the demos, a
banner and how to open the result), and turns a user-caused error into one `error: [code] message` line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from csd_blender.protocol.errors import ProtocolError

from ..commands import edit, generate, texture
from ..commands.texture import DEMO_MESH


def run_reporting_errors(run: Callable, args: argparse.Namespace) -> tuple[int, dict[str, Path] | None]:
    """Call `run(args)`; a user-caused error becomes one `error: [code] message` line on stderr and status 2.

    Args:
        run: a `run_files(args) -> {kind: path}` function.
        args: the parsed command line.
    """
    try:
        return 0, run(args)
    except ProtocolError as exc:  # EngineError, MeshError, RequestError, … : one clear line
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130, None


def run_command(run: Callable, args: argparse.Namespace, banner: str = "", opener: str = "") -> int:
    """A job command's body: run it, print the output paths; exit 0, or 2 with one `error:` line on bad input.

    Args:
        run: the command's `run_files`.
        args: the parsed command line.
        banner: a demo's opening line (stderr); with it the outputs are introduced with the time taken.
        opener: a closing hint (e.g. how to open the result in Blender).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    if banner:
        print(banner, file=sys.stderr)
    code, files = run_reporting_errors(run, args)
    if files:
        indent = ""
        if banner:
            print(f"done in {time.time() - t0:.0f} s. Outputs in {Path(args.out).resolve()}:")
            indent = "  "
        for kind, path in files.items():
            print(f"{indent}{kind:12s} {path}")
        if opener:
            print(opener)
    return code


def _demo_texture(args: argparse.Namespace) -> int:
    return run_command(texture.run_texture_files, args,
                       banner=f"CSD demo: texturing {DEMO_MESH.name} with {args.prompt!r} on the toy prior "
                              f"({args.device}) …",
                       opener="Open textured.glb in Blender (File > Import > glTF) or look at turntable.png.")


def _demo_generate(args: argparse.Namespace) -> int:
    return run_command(generate.run_generate_files, args,
                       banner=f"CSD text-to-mesh demo: {args.prompt!r} on the toy prior ({args.device}) …",
                       opener="Open generated.glb in Blender (File > Import > glTF) or look at turntable.png.")


# subcommand -> (its parser, what it runs)
JOB_COMMANDS: dict[str, tuple[Callable, Callable[[argparse.Namespace], int]]] = {
    "texture": (texture.add_texture_parser, lambda args: run_command(texture.run_texture_files, args)),
    "demo": (texture.add_demo_parser, _demo_texture),
    "edit": (edit.add_edit_parser, lambda args: run_command(edit.run_edit_files, args)),
    "generate": (generate.add_generate_parser, lambda args: run_command(generate.run_generate_files, args)),
    "generate-demo": (generate.add_generate_demo_parser, _demo_generate),
}


def add_job_parsers(subparsers) -> None:
    """Register texture, demo, edit, generate and generate-demo, each running through `run_command`."""
    for name, (add, func) in JOB_COMMANDS.items():
        add(subparsers)
        subparsers.choices[name].set_defaults(func=func)
