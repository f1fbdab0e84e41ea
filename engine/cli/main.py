"""The engine's command line: `python -m engine <subcommand>`, one subparser per command module."""

from __future__ import annotations

import argparse

from .batch import add_batch_parser
from .jobs import add_job_parsers
from .models import add_models_parser
from .serve import add_serve_parser


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (add_serve_parser, add_job_parsers, add_batch_parser, add_models_parser):
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
