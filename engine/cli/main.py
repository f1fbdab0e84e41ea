"""The engine's command line: `python -m engine <subcommand>`, one subparser per command module."""

from __future__ import annotations

import argparse

from ..commands.edit import add_edit_parser
from ..commands.generate import add_generate_demo_parser, add_generate_parser
from ..commands.models import add_models_parser
from ..commands.texture import add_demo_parser, add_texture_parser
from .batch import add_batch_parser
from .serve import add_serve_parser


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (add_serve_parser, add_texture_parser, add_demo_parser, add_edit_parser, add_generate_parser,
                add_generate_demo_parser, add_batch_parser, add_models_parser):
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
