"""The engine's command line: `python -m engine <subcommand>`; one function per subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger(__name__)

TOKEN_ENV = "CSD_ENGINE_TOKEN"


def setup_logging(log_file: str | None, verbose: bool = False) -> None:
    """Log to `log_file` (appending) when given, else to stderr.

    Args:
        log_file: path of the log file, or None.
        verbose: DEBUG instead of INFO.
    """
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _read_token(token_file: str | None) -> str:
    if token_file:
        with open(token_file, encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def add_serve_parser(subparsers) -> None:
    """Register `serve`: run the ZeroMQ engine server."""
    p = subparsers.add_parser("serve", help="run the engine server (ZeroMQ ROUTER) for the Blender add-on")
    p.add_argument("--bind", default="tcp://127.0.0.1:0", help="endpoint; port 0 picks a free port")
    p.add_argument("--token-file", help=f"file holding the access token (default: ${TOKEN_ENV})")
    p.add_argument("--curve-dir", help="CurveZMQ certificates (server.key_secret[, authorized_clients/])")
    p.add_argument("--endpoint-file", help="write the bound endpoint here (JSON) once listening")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until shutdown; exit code 0 after a clean shutdown, 2 for bad arguments."""
    setup_logging(args.log_file, args.verbose)
    load_registries()
    from .device_info import resolve_device
    from .errors import EngineError
    from .server import EngineServer, ServerConfig

    try:
        token = _read_token(args.token_file)
        device = resolve_device(args.device)
        server = EngineServer(
            ServerConfig(
                bind=args.bind,
                token=token,
                device=device,
                curve_dir=args.curve_dir,
                endpoint_file=args.endpoint_file,
            )
        )
        server.bind()
    except (ValueError, OSError, EngineError) as exc:
        logger.error("cannot start the engine server: %s", exc)
        if args.log_file:  # without a log file the message above already went to stderr
            print(f"error: {exc}", file=sys.stderr)
        return 2
    return server.serve_forever()


def load_registries() -> None:
    """Import every task and guidance module so engine.registry.TASKS and GUIDANCE are complete.

    The server and the registry test both call this: a task module added here is served and checked
    against the protocol's TASK_NAMES.
    """
    from . import guidance  # noqa: F401 - registers "csd", "sds"
    from .tasks import texture  # noqa: F401 - registers "texture"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(subparsers)
    from .cli_jobs import add_demo_parser, add_texture_parser

    add_texture_parser(subparsers)
    add_demo_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
