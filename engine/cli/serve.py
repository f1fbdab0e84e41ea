"""`python -m engine serve`: the ZeroMQ engine server for the Blender add-on, and its logging set-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..tasks import load_registries

logger = logging.getLogger(__name__)

TOKEN_ENV = "CSD_ENGINE_TOKEN"
ADMIN_TOKEN_ENV = "CSD_ENGINE_ADMIN_TOKEN"


def setup_logging(log_file: str | None, verbose: bool = False) -> None:
    """Log to `log_file` (appending) when given, else to stderr.

    Args:
        log_file: path of the log file, or None.
        verbose: DEBUG instead of INFO.
    """
    handler: logging.Handler = (  # text a client sent (lone surrogates included) is logged, never fatal
        logging.FileHandler(log_file, encoding="utf-8", errors="backslashreplace")
        if log_file
        else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


# clients ping every 0.2-0.5 s; a timeout of a few heartbeats would cancel a healthy client's jobs whenever one
# ping is late (a busy laptop, a garbage collection in Blender)
MIN_CLIENT_TIMEOUT_S = 2.0


def _read_token(token_file: str | None, env: str = TOKEN_ENV, option: str = "--token-file") -> str:
    """The token in `token_file` (or `$env` when no file is given), stripped.

    Raises:
        ValueError: the file is given but holds nothing but whitespace (an admin token file that silently meant
            "no admin" would let any client shut a shared engine down).
    """
    if token_file:
        with open(token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
        if not token:
            raise ValueError(f"{option} {token_file}: the file is empty (or only whitespace); put the token in it")
        return token
    return os.environ.get(env, "").strip()


def check_serve_args(args: argparse.Namespace) -> None:
    """Refuse option values that would start an engine that misbehaves (ValueError naming the option)."""
    if args.client_timeout is not None and not args.client_timeout >= MIN_CLIENT_TIMEOUT_S:
        raise ValueError(f"--client-timeout: must be at least {MIN_CLIENT_TIMEOUT_S:g} s (clients ping every "
                         f"0.2-0.5 s), got {args.client_timeout}")
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ValueError(f"--ray-workers: must be at least 1 (leave it out for as many as the cluster holds), "
                         f"got {args.ray_workers}")
    if not args.ray_health_timeout > 0:
        raise ValueError(f"--ray-health-timeout: must be > 0, got {args.ray_health_timeout}")
    if args.ray_workers is not None and not args.ray:
        raise ValueError("--ray-workers: needs --ray ADDRESS")


def add_serve_parser(subparsers) -> None:
    """Register `serve`: run the ZeroMQ engine server."""
    p = subparsers.add_parser("serve", help="run the engine server (ZeroMQ ROUTER) for the Blender add-on")
    p.add_argument("--bind", default="tcp://127.0.0.1:0", help="endpoint; port 0 picks a free port")
    p.add_argument("--token-file", help=f"file holding the access token (default: ${TOKEN_ENV})")
    p.add_argument(
        "--admin-token-file",
        help=f"file holding an admin token whose requests see and cancel every client's jobs "
        f"(default: ${ADMIN_TOKEN_ENV}; none when unset)",
    )
    p.add_argument(
        "--client-timeout",
        type=float,
        default=30.0,
        help="seconds a client may stay silent (no request, no ping) before its jobs are cancelled",
    )
    p.add_argument("--curve-dir", help="CurveZMQ certificates (server.key_secret[, authorized_clients/])")
    p.add_argument("--endpoint-file", help="write the bound endpoint here (JSON) once listening")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--ray", default=None, metavar="ADDRESS|local",
                   help="run jobs on a pool of Ray actors (several at once) instead of in this process: 'local' "
                        "starts a Ray runtime here, 'auto' joins the cluster `ray start` began, or ray://HOST:10001")
    p.add_argument("--ray-workers", type=int, default=None,
                   help="pool actors (default: as many as the cluster's GPUs, or CPUs, allow)")
    p.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPUs each pool actor reserves (0 on CPUs)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each pool actor reserves")
    p.add_argument("--ray-health-timeout", type=float, default=30.0,
                   help="seconds a pool actor running a job may leave a progress request unanswered before it is "
                        "replaced and its job ends with engine_died")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until shutdown; exit code 0 after a clean shutdown, 2 when it cannot start.

    A start-up failure (unreadable token file or log file, bad bind address, port in use, bad keys) prints one
    `error: …` line on stderr (and logs it when there is a log file) and exits 2, never a traceback.
    """
    import zmq

    from ..device_info import resolve_device
    from ..errors import EngineError

    logging_ready = False
    try:
        setup_logging(args.log_file, args.verbose)
        logging_ready = True
        check_serve_args(args)
        load_registries()
        from ..serve.config import ServerConfig
        from ..serve.server import EngineServer

        server = EngineServer(
            ServerConfig(
                bind=args.bind,
                token=_read_token(args.token_file),
                admin_token=_read_token(args.admin_token_file, ADMIN_TOKEN_ENV, "--admin-token-file"),
                client_timeout_s=args.client_timeout,
                device=resolve_device(args.device),
                curve_dir=args.curve_dir,
                endpoint_file=args.endpoint_file,
                ray_address=args.ray,
                ray_workers=args.ray_workers,
                gpus_per_worker=args.gpus_per_worker,
                cpus_per_worker=args.cpus_per_worker,
                ray_health_timeout_s=args.ray_health_timeout,
            )
        )
        server.bind()
    except (ValueError, OSError, EngineError, zmq.ZMQError) as exc:
        message = f"cannot start the engine server on {args.bind}: {exc}".replace("\n", " ")
        if args.log_file and logging_ready:  # without a log file the line below is all that goes to stderr
            logger.error(message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return server.serve_forever()
