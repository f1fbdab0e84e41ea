"""The add-on's engine client: a ZeroMQ DEALER, a non-blocking `poll()`, a heartbeat (no bpy/torch).

`poll()` never blocks, so a Blender timer can call it every few tens of milliseconds. It returns events:
`Accepted`, `Progress`, `JobResult` (numpy arrays), `ErrorReply`, `Cancelled`, and `EngineDied` once the
engine stops answering pings for `dead_after_s`.

A death can be false (the engine paused, swapping, or its machine suspended). While the client stays open and
polled it keeps probing; when the engine answers again it asks for its jobs by id and reports `EngineRecovered`:
the jobs still running are followed on, the ones the caller gave up on (`abandon`, or a `wait` that raised
ENGINE_DIED) are cancelled, and the ones the engine no longer knows end with an ENGINE_DIED error event.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from ..protocol import codec
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.limits import REPLY_LIMITS
from ..protocol.messages import (
    MINOR,
    PROTOCOL_VERSION_STR,
    Cancel,
    Cancelled,
    ErrorReply,
    Hello,
    HelloReply,
    Message,
    Ping,
    Pong,
    Release,
    Released,
    Result,
    Shutdown,
    Status,
    StatusReply,
    Submit,
    negotiate,
)
from .events import EngineDied, EngineRecovered, Event, JobResult, array_from_wire, array_to_wire
from .outgoing import wire_arrays

__all__ = ["EngineClient", "EngineDied", "EngineRecovered", "Event", "JobResult", "array_from_wire",
           "array_to_wire"]

logger = logging.getLogger(__name__)

CLIENT_NAME = "csd_blender"


class EngineClient:
    """Talks to one engine over ZeroMQ.

    Args:
        endpoint: e.g. "tcp://127.0.0.1:5555".
        token: the engine's access token, sent in every request header.
        server_public_key: the engine's CurveZMQ public key (Z85 bytes) for remote engines; None on loopback.
        heartbeat_s: send a ping when none is outstanding for this long.
        dead_after_s: report `EngineDied` when a ping stays unanswered and nothing arrived for this long.
        recover_s: how long `wait` keeps probing a dead engine for it to come back before it raises ENGINE_DIED.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        server_public_key: bytes | None = None,
        heartbeat_s: float = 0.5,
        dead_after_s: float = 2.0,
        recover_s: float = 5.0,
    ):
        self.endpoint = endpoint
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.recover_s = recover_s
        self.session = codec.new_id()
        self.hello: HelloReply | None = None
        self.minor = MINOR  # the protocol minor both sides speak, settled by `connect`
        self._token = token
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, REPLY_LIMITS.max_message_bytes)
        if server_public_key is not None:
            public, secret = zmq.curve_keypair()
            self._socket.curve_serverkey = server_public_key
            self._socket.curve_publickey = public
            self._socket.curve_secretkey = secret
        self._socket.connect(endpoint)
        self._events: deque = deque()
        self._replies: dict[str, Message] = {}  # answers to requests (status, release, hello) by parent id
        self._last_recv = time.monotonic()
        self._last_ping = -float("inf")
        self._ping_id: str | None = None
        self._waiting_for: set[str] = set()
        self._alive = True
        self._closed = False
        self._open_jobs: set[str] = set()  # submitted here, no final event yet
        self._abandoned: set[str] = set()  # open jobs nobody follows any more: cancelled when the engine is back
        self._probe_id: str | None = None  # a ping sent while the engine is thought dead
        self._recovery_id: str | None = None  # the status request that finds our jobs after a recovery

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the engine was declared dead or the client closed."""
        return self._alive and not self._closed

    def _send(self, message: Message) -> str:
        if self._closed:
            raise ProtocolError(ErrorCode.ENGINE_DIED, "the client is closed")
        frames, header = codec.encode(message, token=self._token, session=self.session, minor=self.minor)
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ProtocolError(
                ErrorCode.ENGINE_DIED, f"cannot send to the engine at {self.endpoint}: its queue is full"
            ) from None
        return header.msg_id

    # -- requests -------------------------------------------------------------------------------------------

    def connect(self, timeout_s: float = 10.0) -> HelloReply:
        """Handshake: send hello and wait for hello_reply.

        Raises:
            ProtocolError: PROTOCOL_MISMATCH naming both versions, the engine's error (e.g. UNAUTHORIZED), or
                ENGINE_DIED when nothing answers within `timeout_s`.
        """
        msg_id = self._send(Hello(CLIENT_NAME, PROTOCOL_VERSION_STR))
        reply = self._wait_reply(msg_id, timeout_s, "hello")
        if isinstance(reply, ErrorReply):
            raise reply.to_exception()
        if not isinstance(reply, HelloReply):
            raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"expected hello_reply, got {reply.MSG_TYPE}")
        codec.check_version(reply.protocol_version)
        self.hello = reply
        self.minor = negotiate(codec.peek_minor(reply.protocol_version))  # what both sides speak
        self._alive = True
        return reply

    def submit(self, task: str, params: Any, arrays: dict[str, np.ndarray] | None = None) -> str:
        """Send a job; return its id (the submit's msg_id). Progress and the result arrive through `poll()`.

        Args:
            task: a task name (protocol.params.TASK_NAMES).
            params: a params dataclass (e.g. TextureParams) or a plain dict.
            arrays: name -> numpy array (see protocol.params.ARRAY_SPECS).
        """
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = params.to_dict() if hasattr(params, "to_dict") else dataclasses.asdict(params)
        limits = self.hello.limits if self.hello is not None else None
        wire = wire_arrays(task, arrays or {}, self.minor, limits)  # MESSAGE_TOO_LARGE at once, naming the limit
        job_id = self._send(Submit(task, dict(params), wire))
        self._open_jobs.add(job_id)
        return job_id

    def cancel(self, job_id: str) -> None:
        """Ask the engine to stop a job; `Cancelled` (or its result/error, if it finished first) follows."""
        self._send(Cancel(job_id))

    def abandon(self, job_id: str) -> None:
        """Give up following a job of a dead engine: if the engine comes back, the job is cancelled there.

        Args:
            job_id: from `submit`.
        """
        if job_id in self._open_jobs:
            self._abandoned.add(job_id)

    def release(self, timeout_s: float = 30.0) -> Released:
        """Ask the engine to drop its loaded models; ProtocolError(ENGINE_BUSY) while a job runs or waits."""
        reply = self._wait_reply(self._send(Release()), timeout_s, "release")
        if isinstance(reply, ErrorReply):
            raise reply.to_exception()
        return reply

    def status(self, timeout_s: float = 5.0) -> StatusReply:
        """The engine's running job, queue, loaded priors and device."""
        reply = self._wait_reply(self._send(Status()), timeout_s, "status")
        if isinstance(reply, ErrorReply):
            raise reply.to_exception()
        return reply

    def shutdown(self) -> None:
        """Ask the engine to cancel its job and exit (no reply; watch the process or `alive`)."""
        self._send(Shutdown())

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self._closed:
            self._closed = True
            self._socket.close(linger=0)

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- receiving ------------------------------------------------------------------------------------------

    def _receive(self, timeout_ms: int) -> bool:
        """Receive at most everything waiting (waiting up to timeout_ms for the first); True if any came."""
        got = False
        while self._socket.poll(timeout_ms if not got else 0, zmq.POLLIN):
            frames = self._socket.recv_multipart(copy=False)
            got = True
            self._last_recv = time.monotonic()
            try:
                header, message = codec.decode(frames, REPLY_LIMITS)
            except ProtocolError as exc:
                if exc.code == ErrorCode.PROTOCOL_MISMATCH:
                    raise
                logger.warning("dropping an undecodable message from the engine: %s", exc)
                continue
            self._route(header, message)
        return got

    def _route(self, header: codec.Header, message: Message) -> None:
        if not self._alive:
            if not self._revives(header, message):
                return
            self._revive()
        job_id = getattr(message, "job_id", None)
        if isinstance(message, ErrorReply) and job_id is None and header.parent_id in self._open_jobs:
            message.job_id = job_id = header.parent_id  # a refused submit (too large to read): its job ends now
        if isinstance(message, (Result, Cancelled)) or (isinstance(message, ErrorReply) and job_id):
            self._open_jobs.discard(job_id)
            self._abandoned.discard(job_id)
        if isinstance(message, Pong):
            if header.parent_id == self._ping_id:
                self._ping_id = None
        elif isinstance(message, StatusReply) and header.parent_id == self._recovery_id:
            self._recovery_id = None
            self._finish_recovery(message)
        elif isinstance(message, (HelloReply, StatusReply, Released)):
            self._replies[header.parent_id or ""] = message
        elif isinstance(message, Result):
            arrays = {name: array_from_wire(a) for name, a in message.arrays.items()}
            self._events.append(JobResult(message.job_id, message.meta, arrays))
        elif (
            isinstance(message, ErrorReply)
            and message.job_id is None
            and header.parent_id in self._waiting_for
        ):
            self._replies[header.parent_id] = message
        else:
            self._events.append(message)

    # -- recovery after a false death ------------------------------------------------------------------------

    def _revives(self, header: codec.Header, message: Message) -> bool:
        """While dead: does this message show that *our* engine is back? (A refusal from a stranger does not.)"""
        if isinstance(message, Pong):
            return True
        if header.parent_id in self._waiting_for and not isinstance(message, ErrorReply):
            return True
        return getattr(message, "job_id", None) in self._open_jobs

    def _revive(self) -> None:
        """The engine answered after EngineDied: follow it again and ask which of our jobs it still has."""
        logger.info("the engine at %s answers again", self.endpoint)
        self._alive = True
        self._probe_id = self._ping_id = None
        self._last_recv = self._last_ping = time.monotonic()
        self._recovery_id = None
        try:
            self._recovery_id = self._send(Status())
        except ProtocolError as exc:
            logger.warning("could not ask the recovered engine for its jobs: %s", exc)

    def _finish_recovery(self, status: StatusReply) -> None:
        known = set(status.queue) | ({status.current.get("job_id")} if status.current else set())
        known |= {job.get("job_id") for job in status.running if isinstance(job, dict)}  # a shared engine's
        resumed, cancelled, lost = [], [], []
        for job_id in sorted(self._open_jobs):
            if job_id not in known:
                lost.append(job_id)
            elif job_id in self._abandoned:
                cancelled.append(job_id)
            else:
                resumed.append(job_id)
        for job_id in cancelled:
            try:
                self._send(Cancel(job_id))
            except ProtocolError as exc:
                logger.warning("could not cancel abandoned job %s: %s", job_id, exc)
        for job_id in lost:
            self._open_jobs.discard(job_id)
            self._abandoned.discard(job_id)
            self._events.append(
                ErrorReply(job_id, ErrorCode.ENGINE_DIED.value, f"job {job_id}: the engine no longer knows it")
            )
        logger.info("engine recovered: resumed %s, cancelled %s, lost %s", resumed, cancelled, lost)
        self._events.append(EngineRecovered(resumed, cancelled, lost))

    def _probe(self, now: float) -> None:
        """While dead: one ping at a time (again after `dead_after_s`), to notice the engine coming back."""
        if self._probe_id is not None and now - self._last_ping < self.dead_after_s:
            return
        if now - self._last_ping < self.heartbeat_s:
            return
        try:
            self._probe_id = self._send(Ping())
        except ProtocolError:  # the send queue is full: the engine is really gone; try again later
            self._probe_id = None
        self._last_ping = now

    def _wait_reply(self, msg_id: str, timeout_s: float, what: str) -> Message:
        self._waiting_for = {msg_id}
        deadline = time.monotonic() + timeout_s
        try:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError(
                        ErrorCode.ENGINE_DIED,
                        f"no {what} answer from the engine at {self.endpoint} within {timeout_s:g} s",
                    )
                self._receive(int(min(left, 0.05) * 1000) + 1)
            return self._replies.pop(msg_id)
        finally:
            self._waiting_for = set()

    def poll(self) -> list[Event]:
        """Everything that arrived since the last call, without blocking; sends heartbeats.

        Returns:
            events in arrival order; `EngineDied` once when the engine stops answering.
        """
        if self._closed:
            return self._drain_events()
        if not self._alive:
            self._receive(0)
            if not self._alive:
                self._probe(time.monotonic())
                return self._drain_events()
        self._receive(0)
        now = time.monotonic()
        if self._ping_id is None and now - self._last_ping >= self.heartbeat_s:
            # The engine cannot be blamed for time this client spent not polling.
            self._last_recv = max(self._last_recv, now - self.heartbeat_s)
            self._ping_id = self._send(Ping())
            self._last_ping = now
        elif self._ping_id is not None and now - self._last_recv > self.dead_after_s:
            self._alive = False
            reason = f"the engine at {self.endpoint} did not answer for {now - self._last_recv:.1f} s"
            logger.warning(reason)
            self._events.append(EngineDied(reason))
        return self._drain_events()

    def _drain_events(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        return events

    def wait(
        self, job_id: str, timeout_s: float | None = None, on_event: Callable[[Event], None] | None = None
    ) -> JobResult:
        """Block until `job_id` finishes (background mode and scripts).

        An engine declared dead is probed for `recover_s` seconds (or until `timeout_s`): if it comes back and
        still has the job, the wait goes on; otherwise the job is abandoned (cancelled should the engine come
        back later) and ENGINE_DIED is raised.

        Args:
            job_id: from `submit`.
            timeout_s: give up after this long (TimeoutError); None waits forever.
            on_event: called with every event of this job (progress included) as it arrives.

        Raises:
            ProtocolError: the job's error (CANCELLED for a cancelled job, ENGINE_DIED when the engine died).
            TimeoutError: when `timeout_s` passes.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        dead_since = None if self.alive else time.monotonic()
        reason = f"the engine at {self.endpoint} is not answering"
        others: list[Event] = []  # other jobs' events stay for the next poll()
        try:
            while True:
                if self._closed and not self._events:
                    raise ProtocolError(ErrorCode.ENGINE_DIED, "the client is closed")
                if dead_since is not None:
                    now = time.monotonic()
                    if now - dead_since > self.recover_s or (deadline is not None and now > deadline):
                        self.abandon(job_id)
                        raise ProtocolError(ErrorCode.ENGINE_DIED, reason)
                for event in self.poll():
                    if isinstance(event, EngineDied):
                        dead_since, reason = time.monotonic(), event.reason
                        others.append(event)
                        continue
                    if isinstance(event, EngineRecovered):
                        if job_id in event.resumed:  # the death was false: nobody needs to hear of it
                            dead_since = None
                            others = [e for e in others if not isinstance(e, EngineDied)]
                        else:
                            others.append(event)
                        continue
                    if getattr(event, "job_id", None) != job_id:
                        others.append(event)
                        continue
                    if on_event is not None:
                        on_event(event)
                    if isinstance(event, JobResult):
                        return event
                    if isinstance(event, ErrorReply):
                        raise event.to_exception()
                    if isinstance(event, Cancelled):
                        raise ProtocolError(ErrorCode.CANCELLED, f"job {job_id} was cancelled")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")
                if not self._closed:
                    self._socket.poll(20, zmq.POLLIN)
        finally:
            self._events.extendleft(reversed(others))
