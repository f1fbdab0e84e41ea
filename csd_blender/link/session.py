"""The add-on's engine connection: one process/client pair, its state for the UI and the running job (no bpy).

Blender keeps one `EngineSession` per process (`SESSION`). Operators start and stop it, the modal texture
operator stores its `JobState` on it so panels can draw progress, and everything here is plain Python so it
is tested without Blender.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from ..protocol.endpoints import is_loopback

log = logging.getLogger(__name__)

STOPPED, STARTING, RUNNING, DEAD, FAILED = "stopped", "starting", "running", "dead", "failed"


class SessionError(Exception):
    """Starting or using the engine failed; the message is meant for the user."""


@dataclass
class EngineSettings:
    """How to reach the engine (from the add-on preferences).

    Args:
        mode: "LOCAL" (start `python -m engine serve` ourselves) or "REMOTE" (connect to a running engine).
        python: interpreter with the engine installed (LOCAL).
        device: "auto", "cpu" or "cuda" (LOCAL).
        endpoint: "tcp://host:port" (REMOTE).
        token: the remote engine's access token (REMOTE).
        key_folder: folder with the remote engine's CurveZMQ public key "server.key" (REMOTE, optional).
        cache_folder: model cache for the engine (HF_HOME), optional (LOCAL).
        log_file: where the local engine's output goes.
        start_timeout_s: how long to wait for the engine to come up.
        online_access: Blender's "Allow Online Access" (bpy.app.online_access); without it only an engine on
            this machine may be reached.
    """

    mode: str = "LOCAL"
    python: str = ""
    device: str = "auto"
    endpoint: str = ""
    token: str = ""
    key_folder: str = ""
    cache_folder: str = ""
    log_file: str = ""
    start_timeout_s: float = 60.0
    online_access: bool = True


@dataclass
class JobState:
    """What the panel and status bar show about the running job."""

    job_id: str
    task: str
    target: str                       # object name
    stage: str = "queued"
    step: int = 0
    total: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    cancelling_since: float | None = None
    previews: int = 0
    preview_name: str = ""            # the image datablock showing the live preview
    batch_index: int = 0              # this job's place in its operator's batch (0-based)
    batch_total: int = 1              # jobs in the batch (Texture Selected Objects: one per mesh)
    queue_position: int | None = None  # while it waits in the engine's queue: 1 = it starts next
    silent_since: float | None = None  # the engine stopped answering (EngineDied): waiting for it to recover

    @property
    def fraction(self) -> float:
        """Progress of the whole batch in [0, 1]."""
        job = min(1.0, self.step / self.total) if self.total else 0.0
        return min(1.0, (self.batch_index + job) / max(1, self.batch_total))

    def update(self, event) -> None:
        """Take in an `Accepted` or `Progress` message of this job (stage, steps, ETA, queue position).

        Args:
            event: csd_blender.protocol.messages.Accepted or Progress.
        """
        if hasattr(event, "stage"):  # Progress
            self.stage, self.step, self.total = event.stage, event.step, event.total
            self.loss, self.elapsed_s, self.eta_s = event.loss, event.elapsed_s, event.eta_s
            self.queue_position = event.queue_position if event.stage == "queued" else None
        else:  # Accepted: 0 jobs ahead means it starts now
            self.queue_position = event.queue_position or None
            self.stage = "queued" if self.queue_position else "starting"

    def text(self) -> str:
        """One line: [object i/n,] stage [position in the queue], step/total, ETA."""
        if self.cancel_requested:
            return "Cancelling..."
        if self.silent_since is not None:
            return f"the engine is not answering ({time.monotonic() - self.silent_since:.0f} s), waiting for it"
        parts = [f"{self.target} {self.batch_index + 1}/{self.batch_total}"] if self.batch_total > 1 else []
        parts.append(self.stage.capitalize())
        if self.stage == "queued" and self.queue_position:
            parts.append(f"position {self.queue_position}")
        if self.total:
            parts.append(f"step {self.step}/{self.total}")
        if self.eta_s is not None and self.eta_s == self.eta_s:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def ordinal(n: int) -> str:
    """'1st', '2nd', '3rd', '4th', '11th', '22nd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def format_bytes(n: int) -> str:
    """'1.5 GiB' style."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"


def load_server_key(key_folder: str) -> bytes | None:
    """The remote engine's CurveZMQ public key from `key_folder`/server.key (zmq.auth certificate format).

    Args:
        key_folder: folder with "server.key"; empty means no encryption (loopback only).
    """
    if not key_folder:
        return None
    path = os.path.join(key_folder, "server.key")
    if not os.path.isfile(path):
        raise SessionError(f"Key folder: {path} not found (copy the engine's server.key there)")
    import zmq.auth

    public, _secret = zmq.auth.load_certificate(path)
    if not public:
        raise SessionError(f"Key folder: {path} holds no public key")
    return public


class EngineSession:
    """The engine this Blender talks to: a local process we started, or a remote endpoint.

    `stop_in_background`: the add-on sets it in an interactive Blender, so that stopping a local engine (a
    shutdown message, then signals: seconds for a hung engine) never freezes the UI.
    """

    stop_in_background = False

    def __init__(self) -> None:
        self.state = STOPPED
        self.client = None
        self.process = None
        self.hello = None
        self.mode = "LOCAL"
        self.last_error = ""
        self.log_file = ""
        self.idle_silent_since: float | None = None  # idle heartbeat lost: the client probes for a recovery
        self.memory_allocated: int | None = None
        self.job: JobState | None = None
        self._attempt: _StartAttempt | None = None

    # ------------------------------------------------------------------------------------------ queries
    @property
    def connected(self) -> bool:
        """A client is open and the engine answered its last heartbeats."""
        return self.state == RUNNING and self.client is not None and self.client.alive

    def describe(self) -> list[str]:
        """Lines for the Engine panel: state, device, memory, versions."""
        if self._attempt is not None:
            return [f"Engine: starting ({format_duration(time.monotonic() - self._attempt.started)})"]
        if self.state != RUNNING or self.hello is None:
            lines = [f"Engine: {self.state}"]
            if self.last_error:                # one label per line: a label shows no line breaks
                lines.extend(self.last_error.splitlines()[:4])
            return lines
        h = self.hello
        lines = [f"Engine {h.engine_version} ({'local' if self.mode == 'LOCAL' else 'remote'})",
                 f"Device: {h.device_name or h.device}"]
        if h.memory_total_bytes:
            lines.append(f"Memory: {format_bytes(h.memory_free_bytes)} free of "
                         f"{format_bytes(h.memory_total_bytes)}")
        if self.memory_allocated is not None:
            lines.append(f"Allocated after release: {format_bytes(self.memory_allocated)}")
        if self.job is not None and self.job.stage == "queued" and self.job.queue_position:
            ahead = self.job.queue_position - 1
            lines.append(f"Queue: your job is {ordinal(self.job.queue_position)} in line"
                         + (f" ({ahead} job{'s' if ahead != 1 else ''} ahead)" if ahead else " (starts next)"))
        return lines

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def starting(self) -> bool:
        """A `begin_start()` is under way (poll it with `poll_start()`)."""
        return self._attempt is not None

    def start(self, settings: EngineSettings) -> None:
        """Start (LOCAL) or connect to (REMOTE) the engine and do the handshake, blocking (background mode).

        Args:
            settings: from the add-on preferences.

        Raises:
            SessionError: with the reason (missing setting, the engine's log tail, protocol mismatch...).
        """
        if self.connected:
            return
        self._begin(settings)
        self._attempt.run()
        if self.poll_start() != RUNNING:
            raise SessionError(self.last_error)

    def begin_start(self, settings: EngineSettings) -> None:
        """Start without blocking the caller: the launch and handshake run in a thread that touches no bpy.

        Call `poll_start()` (e.g. from a modal timer) until it returns the outcome; `stop()` cancels.

        Args:
            settings: from the add-on preferences.
        """
        if self.connected or self.starting:
            return
        self._begin(settings)
        threading.Thread(target=self._attempt.run, name="csd-engine-start", daemon=True).start()

    def _begin(self, settings: EngineSettings) -> None:
        self._discard()
        self.mode = settings.mode
        self.state = STARTING
        self.last_error = ""
        if settings.mode == "LOCAL":
            self.log_file = settings.log_file
        self._attempt = _StartAttempt(settings)

    def poll_start(self) -> str | None:
        """None while a start is under way; afterwards the state it ended in (RUNNING, FAILED or STOPPED).

        The attempt's client and process are adopted here, on the caller's thread.
        """
        attempt = self._attempt
        if attempt is None:
            return self.state
        if not attempt.done.is_set():
            return None
        self._attempt = None
        if attempt.error:
            attempt.discard()
            self.last_error = attempt.error
            self.state = FAILED
            log.warning("engine start failed: %s", self.last_error)
        else:
            self.client, self.process, self.hello = attempt.client, attempt.process, attempt.hello
            self.state = RUNNING
            self.memory_allocated = None
            log.info("connected to engine %s on %s", self.hello.engine_version, self.hello.device)
        return self.state

    def stop(self, wait: bool | None = None) -> None:
        """Shut the engine down (LOCAL: message, then signals), disconnect (REMOTE) or cancel a start.

        Args:
            wait: wait for a local engine to exit (seconds at worst); None follows `stop_in_background`.
        """
        if self._attempt is not None:
            self._attempt.cancel()  # kills the engine being started; the thread discards what it made
            self._attempt = None
        self._discard(wait)
        self.state = STOPPED
        self.job = None

    def _discard(self, wait: bool | None = None) -> None:
        """Close the client now; stop the local engine now or, in an interactive Blender, on a helper thread."""
        client, process = self.client, self.process
        self.client = self.process = self.hello = None
        if process is None or (wait if wait is not None else not self.stop_in_background):
            close_engine(client, process)
            return
        close_engine(client, None)
        threading.Thread(target=close_engine, args=(None, process), name="csd-engine-stop", daemon=True).start()

    def release(self) -> str:
        """Ask the engine to free its models and device memory; return a one-line summary."""
        if not self.connected:
            raise SessionError("The engine is not running")
        reply = self.client.release()
        self.memory_allocated = reply.memory_allocated_bytes
        names = ", ".join(reply.priors) or "nothing loaded"
        return f"Released {names}; {format_bytes(reply.memory_allocated_bytes)} still allocated"

    def mark_dead(self, reason: str) -> None:
        """The heartbeat failed: remember why, close the client and stop what is left of a local engine."""
        self.last_error = reason
        self.state = DEAD
        self._discard()

    def poll_idle(self) -> bool:
        """Heartbeat while no job runs (from a UI timer): True when the engine just died."""
        if self.job is not None or self.client is None or self.state != RUNNING:
            return False
        from .client import EngineDied

        for event in self.client.poll():
            if isinstance(event, EngineDied):  # perhaps a false death (paused, swapping): the client probes on
                self.idle_silent_since = self.idle_silent_since or time.monotonic()
            elif type(event).__name__ == "EngineRecovered":
                log.info("the engine answers again")
                self.idle_silent_since = None
            else:
                log.debug("ignoring %s while idle", type(event).__name__)
        if self.idle_silent_since is not None and (
                self.client.alive or time.monotonic() - self.idle_silent_since > self.client.recover_s):
            if self.client.alive:
                self.idle_silent_since = None
                return False
            self.mark_dead(f"the engine at {self.client.endpoint} did not answer for "
                           f"{time.monotonic() - self.idle_silent_since:.0f} s")
            self.idle_silent_since = None
            return True
        return False


SESSION = EngineSession()


class _StartAttempt:
    """One engine start: launch (LOCAL) or reach (REMOTE), then handshake; safe to run on a worker thread.

    It touches only its own fields; the session adopts `client`, `process` and `hello` once `done` is set.
    `cancel()` (any thread) kills a local engine being started; whatever the attempt made is then discarded.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.done = threading.Event()
        self.client = None
        self.process = None
        self.hello = None
        self.error = ""
        self._cancelled = False
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._connect()
        except Exception as exc:
            self.error = (exc.args[0] if isinstance(exc, SessionError) else f"{exc}") or type(exc).__name__
        with self._lock:
            cancelled = self._cancelled
            self.done.set()
        if cancelled:
            self.discard()

    def _connect(self) -> None:
        settings = self.settings
        if settings.mode == "LOCAL":
            endpoint, token, server_key = self._start_local()
        elif settings.mode == "REMOTE":
            if not settings.endpoint.strip():
                raise SessionError("Endpoint: set the remote engine's address (tcp://host:port) in the "
                                   "add-on preferences")
            endpoint, token = settings.endpoint.strip(), settings.token
            if not settings.online_access and not is_loopback(endpoint):
                raise SessionError(f"Endpoint: {endpoint} is on another machine; allow Online Access in "
                                   "Preferences > System to reach it")
            server_key = load_server_key(settings.key_folder)
        else:
            raise SessionError(f"Engine mode: unknown mode {settings.mode!r}")
        from .client import EngineClient

        self.client = EngineClient(endpoint, token, server_public_key=server_key)
        self.hello = self.client.connect(timeout_s=min(settings.start_timeout_s, 30.0))

    def _start_local(self) -> tuple[str, str, None]:
        settings = self.settings
        python = settings.python.strip()
        if not python:
            raise SessionError("Python: set the interpreter that has the CSD engine installed, in the add-on "
                               "preferences")
        if not os.path.isfile(python):
            raise SessionError(f"Python: {python} does not exist")
        from .process import EngineProcess

        extra_env = {"HF_HOME": settings.cache_folder} if settings.cache_folder.strip() else None
        with self._lock:
            if self._cancelled:
                raise SessionError("Engine start cancelled")
            self.process = EngineProcess(python, log_file=settings.log_file, device=settings.device,
                                         extra_env=extra_env)
        endpoint, token = self.process.start(timeout_s=settings.start_timeout_s)
        return endpoint, token, None

    def cancel(self) -> None:
        """Stop the start: kill a local engine now (the launcher then fails fast) and discard the results."""
        with self._lock:
            self._cancelled = True
            finished = self.done.is_set()
            process = self.process
        if finished:  # exactly one of run() and cancel() sees the other's flag: that one discards
            self.discard()
        elif process is not None:
            process.abort()

    def discard(self) -> None:
        """Close the client and stop the engine this attempt made (idempotent)."""
        close_engine(self.client, self.process)
        self.client = self.process = None


def close_engine(client, process) -> None:
    """Close a client and stop a local engine process (shutdown message, then signals); either may be None."""
    if client is not None:
        client.close()
    if process is not None:
        try:
            process.stop()
        except Exception as exc:
            log.warning("stopping the engine process failed: %s", exc)
