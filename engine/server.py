"""The engine server: a ZeroMQ ROUTER loop that checks every request, queues jobs and streams their progress.

Only this loop touches the socket. It answers ping/status/cancel/hello at once (poll timeout ~20 ms) while a
`Worker` thread runs one job at a time and posts its messages into a deque that the loop drains. Every
request must carry the launch token (compared with `hmac.compare_digest`); anything malformed or invalid
gets an `error` reply with a stable code, and the loop keeps serving.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from csd_blender.protocol import codec
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.limits import REQUEST_LIMITS, Limits
from csd_blender.protocol.messages import (
    PROTOCOL_VERSION_STR,
    Accepted,
    Cancel,
    Cancelled,
    ErrorReply,
    Hello,
    HelloReply,
    Message,
    Ping,
    Pong,
    Release,
    Shutdown,
    Status,
    StatusReply,
    Submit,
)

from . import __version__
from .device_info import device_info
from .registry import GUIDANCE, TASKS
from .validate import check_arrays
from .worker import JobRecord, Outgoing, Worker

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MIN_TOKEN_CHARS = 16


@dataclass
class ServerConfig:
    """How the server listens and runs.

    Args:
        bind: ZeroMQ endpoint; port 0 picks a free port ("tcp://127.0.0.1:0").
        token: the secret every request must carry (at least 16 characters).
        device: resolved torch device ("cpu", "cuda:0").
        curve_dir: folder with `server.key_secret` (zmq.auth certificates) and optionally
            `authorized_clients/` (public keys); required for a non-loopback bind.
        endpoint_file: where to write {"endpoint", "pid", ...} once bound (atomically).
        limits: request size limits.
        progress_hz: at most this many progress events per second per job.
        poll_ms: socket poll timeout (how quickly worker messages go out).
        shutdown_grace_s: how long shutdown waits for a cancelled job to stop.
    """

    bind: str = "tcp://127.0.0.1:0"
    token: str = ""
    device: str = "cpu"
    curve_dir: str | None = None
    endpoint_file: str | None = None
    limits: Limits = field(default_factory=lambda: REQUEST_LIMITS)
    progress_hz: float = 5.0
    poll_ms: int = 20
    shutdown_grace_s: float = 30.0


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.x / localhost / ::1."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlsplit(endpoint.replace("*", "0")).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def write_endpoint_file(path: str, info: dict) -> None:
    """Write JSON to `path` atomically (temporary file in the same folder + os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".endpoint-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


def available_priors() -> list[str]:
    """Priors usable without a download (engine.priors.available_priors when it exists)."""
    try:
        from . import priors

        listing = getattr(priors, "available_priors", None)
        if callable(listing):
            return list(listing())
    except Exception as exc:  # noqa: BLE001 - a broken prior package must not stop the handshake
        logger.warning("listing priors failed: %s", exc)
    return ["toy"] if (Path(__file__).parent / "assets" / "toy_prior").is_dir() else []


class EngineServer:
    """The ROUTER loop. `bind()` then `serve_forever()` (returns the exit code, 0 after a clean shutdown).

    Args:
        config: a ServerConfig.
    """

    def __init__(self, config: ServerConfig):
        if len(config.token) < MIN_TOKEN_CHARS:
            raise ValueError(f"token: must be at least {MIN_TOKEN_CHARS} characters")
        if not is_loopback(config.bind) and not config.curve_dir:
            raise ValueError(
                f"refusing to bind {config.bind} (not loopback) without CurveZMQ keys: "
                "pass --curve-dir with server.key_secret, or bind tcp://127.0.0.1"
            )
        self.config = config
        self._token = config.token.encode("utf-8")
        self.context = zmq.Context()
        self.socket: zmq.Socket | None = None
        self.endpoint = ""
        self._auth = None
        self.outbox: deque[Outgoing] = deque()
        self.worker = Worker(config.device, self.outbox, config.progress_hz)
        self.jobs: dict[str, JobRecord] = {}  # pending and running, by job id
        self.pending: deque[JobRecord] = deque()
        self.running: JobRecord | None = None
        self._stopping = False
        self._stop_deadline = 0.0
        self._signalled = threading.Event()

    # -- setup ----------------------------------------------------------------------------------------------

    def bind(self) -> str:
        """Bind the ROUTER socket; return the resolved endpoint (and write the endpoint file)."""
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.limits.max_message_bytes)
        if self.config.curve_dir:
            self._setup_curve(sock, self.config.curve_dir)
        address = self.config.bind
        if address.startswith("tcp://") and address.endswith(":0"):
            address = address[:-2] + ":*"
        sock.bind(address)
        self.socket = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        logger.info(
            "engine %s (protocol %s) listening on %s, device %s",
            __version__,
            PROTOCOL_VERSION_STR,
            self.endpoint,
            self.config.device,
        )
        if self.config.endpoint_file:
            write_endpoint_file(
                self.config.endpoint_file,
                {
                    "endpoint": self.endpoint,
                    "pid": os.getpid(),
                    "protocol_version": PROTOCOL_VERSION_STR,
                    "engine_version": __version__,
                },
            )
        return self.endpoint

    def _setup_curve(self, sock: zmq.Socket, curve_dir: str) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        public, secret = zmq.auth.load_certificate(os.path.join(curve_dir, "server.key_secret"))
        if not secret:
            raise ValueError(f"{curve_dir}/server.key_secret holds no secret key")
        self._auth = ThreadAuthenticator(self.context)
        self._auth.start()
        clients = os.path.join(curve_dir, "authorized_clients")
        self._auth.configure_curve(
            domain="*", location=clients if os.path.isdir(clients) else zmq.auth.CURVE_ALLOW_ANY
        )
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    # -- the loop -------------------------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        """Begin a graceful shutdown (safe from a signal handler)."""
        self._signalled.set()

    def serve_forever(self) -> int:
        """Serve until a shutdown request or SIGTERM/SIGINT; return 0."""
        if self.socket is None:
            self.bind()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while True:
                if self._signalled.is_set() and not self._stopping:
                    self._begin_shutdown("signal")
                events = dict(poller.poll(self.config.poll_ms))
                if self.socket in events:
                    for _ in range(100):  # drain what is waiting, but keep the outbox moving
                        try:
                            frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(frames)
                self._flush_outbox()
                self._start_next_job()
                if self._stopping and (self.running is None or time.monotonic() > self._stop_deadline):
                    self._flush_outbox()
                    break
        finally:
            self._close()
        return 0

    def _close(self) -> None:
        self.worker.commands.put(("stop",))
        if self.running is not None:
            logger.warning("job %s did not stop within the grace period; exiting anyway", self.running.job_id)
        else:
            self.worker.join(timeout=5.0)
        if self._auth is not None:
            self._auth.stop()
        if self.socket is not None:
            self.socket.close()
        self.context.term()
        logger.info("engine stopped")

    def _begin_shutdown(self, why: str) -> None:
        logger.info("shutting down (%s)", why)
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.config.shutdown_grace_s
        while self.pending:
            record = self.pending.popleft()
            self.jobs.pop(record.job_id, None)
            self._send(record.identity, Cancelled(record.job_id), record.job_id)
        if self.running is not None:
            self.running.cancel.set()

    def _send(self, identity: bytes, message: Message, parent_id: str | None) -> None:
        frames, _ = codec.encode(message, parent_id=parent_id)
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # peer gone or its queue full: drop, never block the loop
            logger.warning("could not send %s to a client: %s", message.MSG_TYPE, exc)

    def _flush_outbox(self) -> None:
        while self.outbox:
            item = self.outbox.popleft()
            if item.message is not None and item.identity is not None:
                self._send(item.identity, item.message, item.parent_id)
            if item.finished is not None:
                self.jobs.pop(item.finished, None)
                if self.running is not None and self.running.job_id == item.finished:
                    self.running = None

    def _start_next_job(self) -> None:
        if self.running is None and self.pending and not self._stopping:
            self.running = self.pending.popleft()
            self.worker.commands.put(("job", self.running))

    # -- requests -------------------------------------------------------------------------------------------

    def _handle(self, frames: list) -> None:
        identity, frames = frames[0].bytes, frames[1:]
        header = None
        try:
            header = codec.decode_header(frames, self.config.limits)
            if not hmac.compare_digest(header.token.encode("utf-8"), self._token):
                raise ProtocolError(
                    ErrorCode.UNAUTHORIZED,
                    "missing or wrong token" if header.token else "the request carries no token",
                )
            message = codec.decode_body(header, frames)
            self._dispatch(identity, header, message)
        except ProtocolError as exc:  # EngineError included
            msg_id = header.msg_id if header else codec.peek_msg_id(frames, self.config.limits)
            job_id = msg_id if header is not None and header.msg_type == "submit" else None
            logger.info("request %s rejected: %s", msg_id, exc)
            self._send(identity, ErrorReply.from_exception(exc, job_id), msg_id)
        except Exception as exc:  # noqa: BLE001 - never let one request stop the loop
            import traceback

            msg_id = header.msg_id if header else None
            logger.exception("request %s crashed the handler", msg_id)
            error = ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:500])
            self._send(identity, ErrorReply.from_exception(error, None, traceback.format_exc()), msg_id)

    def _dispatch(self, identity: bytes, header: codec.Header, message: Message) -> None:
        reply_to = header.msg_id
        if isinstance(message, Ping):
            self._send(identity, Pong(busy=self.running is not None), reply_to)
        elif isinstance(message, Hello):
            self._send(identity, self._hello_reply(), reply_to)
        elif isinstance(message, Submit):
            self._submit(identity, header, message)
        elif isinstance(message, Cancel):
            self._cancel(identity, message.job_id, reply_to)
        elif isinstance(message, Status):
            current = dict(self.running.status) if self.running is not None else None
            if self.running is not None and not current:
                current = {"job_id": self.running.job_id, "task": self.running.spec.name, "stage": "starting"}
            self._send(
                identity,
                StatusReply(
                    current, [r.job_id for r in self.pending], self.worker.loaded_priors, self.config.device
                ),
                reply_to,
            )
        elif isinstance(message, Release):
            if self.running is not None or self.pending:  # never make a UI wait for a job to finish
                raise ProtocolError(
                    ErrorCode.ENGINE_BUSY,
                    "cannot release models while a job is running or queued; cancel it first",
                )
            self.worker.commands.put(("release", identity, reply_to))
        elif isinstance(message, Shutdown):
            self._begin_shutdown(f"requested by client session {header.session or '?'}")
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"{message.MSG_TYPE!r} is not a request")

    def _hello_reply(self) -> HelloReply:
        from ._optional import backends

        info = device_info(self.config.device)
        return HelloReply(
            PROTOCOL_VERSION_STR,
            __version__,
            info.device,
            info.label,
            info.total_bytes,
            info.free_bytes,
            TASKS.names(),
            GUIDANCE.names(),
            available_priors(),
            backends(),
        )

    def _submit(self, identity: bytes, header: codec.Header, message: Submit) -> None:
        job_id = header.msg_id
        if self._stopping:
            raise ProtocolError(ErrorCode.ENGINE_BUSY, "the engine is shutting down")
        if job_id in self.jobs:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"msg_id: job {job_id} already exists", field="msg_id")
        if message.task not in TASKS:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TASK,
                f"task: unknown task {message.task!r:.80}; known: {', '.join(TASKS.names())}",
                field="task",
            )
        spec = TASKS.get(message.task)
        params = spec.params_cls.from_dict(message.params).validate()
        if getattr(params, "device", None) == "auto":
            params.device = self.config.device  # jobs run where the engine's priors live
        arrays = check_arrays(message.task, message.arrays)
        record = JobRecord(job_id, identity, spec, params, arrays)
        position = len(self.pending) + (1 if self.running is not None else 0)
        self.jobs[job_id] = record
        self.pending.append(record)
        logger.info("job %s (%s) accepted at queue position %d", job_id, spec.name, position)
        self._send(identity, Accepted(job_id, position), job_id)

    def _cancel(self, identity: bytes, job_id: str, reply_to: str) -> None:
        record = self.jobs.get(job_id)
        if record is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_JOB, f"job_id: no queued or running job {job_id!r:.80}", field="job_id"
            )
        if record in self.pending:
            self.pending.remove(record)
            self.jobs.pop(job_id, None)
            self._send(record.identity, Cancelled(job_id), job_id)
            if identity != record.identity:
                self._send(identity, Cancelled(job_id), reply_to)
        else:
            logger.info("cancelling running job %s", job_id)
            record.cancel.set()
