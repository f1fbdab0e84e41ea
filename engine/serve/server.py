"""The engine server: a ZeroMQ ROUTER loop that checks every request, queues jobs and streams their progress.

Only this loop touches the socket. It answers ping/status/cancel/hello at once (poll timeout ~20 ms) while a
`Worker` thread runs one job at a time and posts its messages into a deque that the loop drains. Every
request must carry the launch token (compared with `hmac.compare_digest`); anything malformed or invalid
gets an `error` reply with a stable code, and the loop keeps serving: no request, job or outgoing message can
end it (an unexpected failure becomes an `internal` reply with an error id; the traceback stays in the log).

With `ray_address` (`serve --ray`) the jobs run on a pool of Ray actors (engine/serve/ray_pool.py), one job per actor
at a time, instead of the worker thread; the loop, the protocol, the checks and the client rules are the same.

Clients are told apart by the `session` of their request headers (by their connection when they send none). A
session id is a secret of at least 16 random characters (engine/serve/access.py: it follows its client to a new
connection, which is how a client recovers after a false death, so whoever knows it owns the jobs): a client sees and cancels only its own jobs, and the jobs of a client silent for `client_timeout_s` are
cancelled. A request carrying the admin token sees and cancels every job; when an admin token is set, only it
may shut the engine down.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from typing import Any

import zmq

from csd_blender.protocol import codec
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.messages import (
    PROTOCOL_VERSION_STR,
    Accepted,
    Cancel,
    Cancelled,
    ErrorReply,
    Hello,
    Message,
    Ping,
    Pong,
    Progress,
    Release,
    Shutdown,
    Status,
    Submit,
    negotiate,
)

from .. import __version__
from ..errors import internal_error
from ..registry import TASKS
from .access import Clients, Tokens, check_bind, describe, setup_curve
from .admission import build_job, check_params
from .arrays import check_arrays
from .config import ServerConfig
from .hello import hello_reply, status_reply, write_endpoint_file
from .local_worker import JobRecord, Outgoing, Worker, malloc_trim

logger = logging.getLogger(__name__)

# after a request this large the heap is trimmed, so rejected uploads leave no high-water mark in the RSS
TRIM_AFTER_BYTES = 8 * 1024 * 1024


class EngineServer:
    """The ROUTER loop. `bind()` then `serve_forever()` (returns the exit code, 0 after a clean shutdown).

    Args:
        config: a ServerConfig.
    """

    # a loop iteration that took longer than this (the process was paused, the machine slept) is not held
    # against the clients: their silence is counted from the end of the stall
    STALL_S = 1.0

    def __init__(self, config: ServerConfig):
        check_bind(config.bind, config.curve_dir)
        self.config = config
        self.tokens = Tokens(config.token, config.admin_token)
        self.context = zmq.Context()
        self.socket: zmq.Socket | None = None
        self.endpoint = ""
        self._auth = None
        self.outbox: deque[Outgoing] = deque()
        if config.ray_address:
            from .ray_pool import RayPool

            self.worker = RayPool(config.ray_address, self.outbox, config.ray_workers, config.gpus_per_worker,
                                  config.cpus_per_worker, config.progress_hz,
                                  health_timeout_s=config.ray_health_timeout_s)
        else:
            self.worker = Worker(config.device, self.outbox, config.progress_hz)
        self.slots: int = self.worker.slots  # jobs that run at once
        self.jobs: dict[str, JobRecord] = {}  # pending and running, by job id
        self.pending: deque[JobRecord] = deque()
        self.active: dict[str, JobRecord] = {}  # running, in start order
        self.clients = Clients()
        self._stopping = False
        self._stop_deadline = 0.0
        self._signalled = threading.Event()
        self._last_tick = time.monotonic()
        self._next_expiry_check = 0.0
        self._reply_minor = 0  # the protocol minor of the request being handled (negotiated)

    @property
    def running(self) -> JobRecord | None:
        """The earliest running job (None when idle)."""
        return next(iter(self.active.values()), None)

    # -- setup ----------------------------------------------------------------------------------------------

    def bind(self) -> str:
        """Bind the ROUTER socket; return the resolved endpoint (and write the endpoint file).

        Raises:
            OSError, ValueError, zmq.ZMQError: the endpoint cannot be bound (in use, malformed) or the keys
                cannot be read; the socket and context are closed again.
        """
        sock = self.context.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 1000)
            # frames up to twice the limit are still read, so their sender gets a message_too_large reply to its
            # msg_id; ZeroMQ cuts larger ones (the client checks the limits hello_reply names before sending)
            sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.config.limits.max_message_bytes)
            if self.config.curve_dir:
                self._auth = setup_curve(self.context, sock, self.config.curve_dir)
            address = self.config.bind
            if address.startswith("tcp://") and address.endswith(":0"):
                address = address[:-2] + ":*"
            sock.bind(address)
            self.socket = sock
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
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
        except BaseException:
            self.socket = None
            sock.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            self.context.term()
            raise
        logger.info(
            "engine %s (protocol %s) listening on %s, device %s",
            __version__,
            PROTOCOL_VERSION_STR,
            self.endpoint,
            self.config.device,
        )
        return self.endpoint

    # -- the loop -------------------------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        """Begin a graceful shutdown (safe from a signal handler)."""
        self._signalled.set()

    def serve_forever(self) -> int:
        """Serve until a shutdown request or SIGTERM/SIGINT; return 0.

        No exception of one request, job or message leaves this loop: each is logged under an error id and
        the loop goes on.
        """
        if self.socket is None:
            self.bind()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        failures = 0
        try:
            while True:
                try:
                    if self._tick(poller):
                        break
                    failures = 0
                except zmq.ContextTerminated:
                    logger.error("the ZeroMQ context was terminated; stopping")
                    break
                except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure
                    internal_error(exc, "the server loop")
                    failures += 1
                    time.sleep(min(1.0, 0.01 * failures))  # never spin on a failure that repeats
        finally:
            self._close()
        return 0

    def _tick(self, poller: zmq.Poller) -> bool:
        """One loop iteration; True when the server should stop."""
        if self._signalled.is_set() and not self._stopping:
            self._begin_shutdown("signal")
        events = dict(poller.poll(self.config.poll_ms))
        self._forgive_stall()
        if self.socket in events:
            for _ in range(100):  # drain what is waiting, but keep the outbox moving
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                nbytes = sum(len(f) for f in frames)
                self._handle(frames)
                del frames
                if nbytes > TRIM_AFTER_BYTES:
                    malloc_trim()  # a large request (accepted or not) leaves no high-water mark in the heap
        self._flush_outbox()
        self._expire_silent_clients()
        self._start_next_job()
        self._announce_queue_positions()
        if self._stopping and (not self.active or time.monotonic() > self._stop_deadline):
            self._flush_outbox()
            return True
        return False

    def _forgive_stall(self) -> None:
        now = time.monotonic()
        gap, self._last_tick = now - self._last_tick, now
        if gap > self.STALL_S + self.config.poll_ms / 1000:
            logger.warning("the server loop stalled for %.1f s (the process paused, or a slow request); "
                           "clients get that time back", gap)
            self.clients.forgive(gap)

    def _close(self) -> None:
        self.worker.commands.put(("stop",))
        if self.active:
            logger.warning("job(s) %s did not stop within the grace period; exiting anyway", ", ".join(self.active))
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
        for record in self.active.values():
            record.cancel.set()

    # -- sending --------------------------------------------------------------------------------------------

    def _send(self, identity: bytes, message: Message, parent_id: str | None, minor: int | None = None) -> bool:
        """Encode and send one message for a peer of protocol 1.`minor` (None: the job's client's, else the
        current request's); never raises. Returns True when it went out.

        Non-finite floats are sent as null (with a warning naming the fields). A message that cannot be encoded
        or sent becomes an `internal` error reply for its job (or its request).
        """
        if minor is None:
            record = self.jobs.get(parent_id) if parent_id else None
            minor = record.minor if record is not None else self._reply_minor
        try:
            replaced: list[str] = []
            frames, _ = codec.encode(message, parent_id=parent_id, replaced=replaced, minor=minor)
            if replaced:
                logger.warning(
                    "%s %s: non-finite value(s) sent as null: %s",
                    message.MSG_TYPE, parent_id, ", ".join(replaced[:10]),
                )
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:  # the peer's queue is full: drop, never block the loop
            logger.warning("could not send %s %s to a client: its queue is full", message.MSG_TYPE, parent_id)
            return False
        except Exception as exc:  # noqa: BLE001 - an unsendable message must not end the loop
            error = internal_error(exc, f"sending {message.MSG_TYPE} {parent_id}")
        if isinstance(message, ErrorReply) and message.code == ErrorCode.INTERNAL.value:
            return False  # the error reply itself failed: the log has it, nothing more to try
        job_id = getattr(message, "job_id", None)
        return self._send(identity, ErrorReply.from_exception(error, job_id), parent_id, minor)

    def _flush_outbox(self) -> None:
        while self.outbox:
            item = self.outbox.popleft()
            try:
                if item.message is not None and item.identity is not None:
                    record = self.jobs.get(item.parent_id) if item.parent_id else None
                    # a job's messages follow its owner to its latest connection
                    identity = record.identity if record is not None else item.identity
                    self._send(identity, item.message, item.parent_id, record.minor if record is not None else 0)
            finally:
                if item.finished is not None:
                    self.jobs.pop(item.finished, None)
                    self.active.pop(item.finished, None)

    def _start_next_job(self) -> None:
        while len(self.active) < self.slots and self.pending and not self._stopping:
            record = self.pending.popleft()
            self.active[record.job_id] = record
            self.worker.commands.put(("job", record))

    def _announce_queue_positions(self) -> None:
        """Tell each queued job's client its new place when it moved up (1: it starts next)."""
        for i, record in enumerate(self.pending):
            if record.queue_position != i + 1:
                record.queue_position = i + 1
                self._send(record.identity, Progress(record.job_id, "queued", 0, 0, queue_position=i + 1),
                           record.job_id)

    # -- clients --------------------------------------------------------------------------------------------

    def _expire_silent_clients(self) -> None:
        """Cancel the jobs of clients silent past `client_timeout_s` (queued first); forget idle clients."""
        now = time.monotonic()
        if now < self._next_expiry_check:
            return
        self._next_expiry_check = now + min(0.5, self.config.client_timeout_s / 4)
        limit = now - self.config.client_timeout_s
        for owner, last_seen in self.clients.silent_since(limit):
            queued = [r for r in self.pending if r.owner == owner]
            for record in queued:
                self.pending.remove(record)
                self.jobs.pop(record.job_id, None)
                self._send(record.identity, Cancelled(record.job_id), record.job_id)
            running = [r for r in self.active.values() if r.owner == owner]
            if queued or any(not r.cancel.is_set() for r in running):
                logger.warning(
                    "client %s silent for %.0f s: cancelling its %d queued job(s)%s",
                    describe(owner), now - last_seen, len(queued),
                    f" and running job {', '.join(r.job_id for r in running)}" if running else "",
                )
            for record in running:
                record.cancel.set()
            if not running:
                self.clients.forget(owner)

    # -- requests -------------------------------------------------------------------------------------------

    def _handle(self, frames: list) -> None:
        identity, frames = frames[0].bytes, frames[1:]
        header = None
        msg_id = None
        msg_type = None
        self._reply_minor = 0  # until the request's header says which minor it speaks
        try:
            header = codec.decode_header(frames, self.config.limits)
            msg_id, msg_type = header.msg_id, header.msg_type
            self._reply_minor = negotiate(codec.peek_minor(header.version))
            admin = self.tokens.authorise(header)
            owner = self.clients.seen(identity, header, self.jobs.values())
            message = codec.decode_body(header, frames)
            self._dispatch(identity, header, message, owner, admin)
        except ProtocolError as exc:  # EngineError included
            if header is None:  # too large, or an unreadable header: still answer the request that caused it
                msg_id, msg_type = codec.peek_header(frames, self.config.limits)
            job_id = msg_id if msg_type == "submit" else None  # a refused submit closes its job at once
            logger.info("request %s rejected: %s", msg_id, exc)
            self._send(identity, ErrorReply.from_exception(exc, job_id), msg_id, self._reply_minor)
        except Exception as exc:  # noqa: BLE001 - never let one request stop the loop
            error = internal_error(exc, f"request {msg_id} ({msg_type or '?'})")
            job_id = msg_id if msg_type == "submit" else None
            self._send(identity, ErrorReply.from_exception(error, job_id), msg_id, self._reply_minor)

    def _dispatch(self, identity: bytes, header: codec.Header, message: Message, owner: Any, admin: bool) -> None:
        reply_to = header.msg_id
        if isinstance(message, Ping):
            self._send(identity, Pong(busy=bool(self.active)), reply_to)
        elif isinstance(message, Hello):
            self._send(identity, hello_reply(self.config.device, self.config.limits, self.worker.devices(),
                                             self._reply_minor), reply_to)
        elif isinstance(message, Submit):
            self._submit(identity, header, message, owner)
        elif isinstance(message, Cancel):
            self._cancel(identity, message.job_id, reply_to, owner, admin)
        elif isinstance(message, Status):
            self._send(identity, status_reply(self, owner, admin), reply_to)
        elif isinstance(message, Release):
            if self.active or self.pending:  # never make a UI wait for a job to finish
                raise ProtocolError(
                    ErrorCode.ENGINE_BUSY,
                    "cannot release models while a job is running or queued; cancel it first",
                )
            self.worker.commands.put(("release", identity, reply_to))
        elif isinstance(message, Shutdown):
            if self.tokens.has_admin and not admin:  # a shared engine: one artist must not stop everyone's jobs
                raise ProtocolError(
                    ErrorCode.UNAUTHORIZED,
                    "shutdown of a shared engine (started with an admin token) needs the admin token; "
                    "cancel your own jobs instead, or ask whoever runs the engine",
                )
            self._begin_shutdown(f"requested by client {describe(owner)}")
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"{message.MSG_TYPE!r} is not a request")

    def _submit(self, identity: bytes, header: codec.Header, message: Submit, owner: Any) -> None:
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
        # on a Ray pool "auto" stays: each actor runs the job on its own device
        params = check_params(spec, message.params, None if self.config.ray_address else self.config.device)
        arrays = check_arrays(message.task, message.arrays)
        job = build_job(spec, params, arrays)  # everything the job needs is checked before `accepted`
        record = JobRecord(job_id, identity, spec, params, arrays, owner=owner, job=job, minor=self._reply_minor)
        position = len(self.pending) + (1 if len(self.active) >= self.slots else 0)
        record.queue_position = position
        self.jobs[job_id] = record
        self.pending.append(record)
        logger.info("job %s (%s) accepted at queue position %d", job_id, spec.name, position)
        self._send(identity, Accepted(job_id, position), job_id)

    def _cancel(self, identity: bytes, job_id: str, reply_to: str, owner: Any, admin: bool) -> None:
        record = self.jobs.get(job_id)
        if record is None or not (admin or record.owner == owner):  # another client's job does not exist here
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
