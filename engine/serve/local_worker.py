"""The server's job thread: runs one job at a time, keeps priors loaded, maps failures to errors.

It never touches the socket: every outgoing message goes into `outbox` (a thread-safe deque) that the socket
loop drains. Priors stay loaded between jobs until a `release` command (or a job needing another prior).
"""

from __future__ import annotations

import gc
import logging
import math
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.messages import Cancelled, ErrorReply, Message, Progress, Released, Result

from ..errors import CancelledError, internal_error
from ..tasks.base import ProgressEvent, TaskSpec
from .arrays import from_numpy

logger = logging.getLogger(__name__)

OOM_SETTINGS = ("batch_size", "render_size", "texture_size", "quality")


@dataclass
class JobRecord:
    """A job from `submit` to its last message (owned by the socket loop; `status` written by the worker).

    Args:
        job_id: the submit's msg_id.
        identity: the ROUTER identity its messages go to (the owner's latest connection).
        spec: the task's registered TaskSpec.
        params: validated protocol parameters.
        arrays: validated input arrays (name -> numpy).
        owner: the client that submitted it (its session id, or its connection when it sends none).
        job: the task's job, built by `make_job` at the door (None: the worker builds it).
        queue_position: the place its client was last told while it waits (1: it starts next).
        minor: the protocol minor of its client's submit (negotiated: at most this side's).
    """

    job_id: str
    identity: bytes
    spec: TaskSpec
    params: Any
    arrays: dict[str, np.ndarray]
    owner: Any = None
    job: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)
    status: dict = field(default_factory=dict)
    queue_position: int = 0
    minor: int = 0  # the protocol minor its client speaks: its messages carry only that minor's fields


@dataclass
class Outgoing:
    """One message for the socket loop to send; `finished` marks the job's last message."""

    identity: bytes | None
    message: Message | None
    parent_id: str | None
    finished: str | None = None


# what torch's allocators say when they cannot allocate: CUDA ("CUDA out of memory"), the CPU ("DefaultCPUAllocator:
# can't allocate memory: you tried to allocate …"), MPS, and Windows' "not enough memory"
OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.cuda.OutOfMemoryError, MemoryError and the allocators' out-of-memory RuntimeErrors (CPU too)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(p in str(exc).lower() for p in OOM_PHRASES)


def oom_error(params: Any, device: str, task: str) -> ProtocolError:
    """An OUT_OF_MEMORY error naming the settings to lower, with their current values."""
    values = []
    for name in OOM_SETTINGS:
        if hasattr(params, name):
            value = getattr(params, name)
            values.append(f"{name} (now {'auto' if value is None else value})")
    hint = ", ".join(values[:-1]) + (f" or {values[-1]}" if values else "")
    message = (
        f"out of memory on {device} while running {task!r}: lower {hint}"
        if values
        else f"out of memory on {device} while running {task!r}"
    )
    return ProtocolError(ErrorCode.OUT_OF_MEMORY, message, field="batch_size" if values else None)


def malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc only) so a release shows in the process's RSS."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def free_device_memory() -> int:
    """Collect garbage, trim the heap, empty the CUDA cache; return bytes still allocated on CUDA (or 0)."""
    gc.collect()
    malloc_trim()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
        return int(torch.cuda.memory_allocated())
    return 0


class Worker(threading.Thread):
    """Runs `commands` one at a time: ("job", JobRecord), ("release", identity, msg_id), ("stop",).

    Args:
        device: torch device string the priors load on ("cpu", "cuda", "cuda:N").
        outbox: deque the socket loop drains.
        progress_hz: at most this many progress events per second per job (events with a preview always go).
    """

    slots = 1  # jobs that run at once (engine.serve.ray_pool.RayPool: one per actor)
    kind = "local"  # what status reports as the pool's kind

    def __init__(self, device: str, outbox: deque, progress_hz: float = 5.0):
        super().__init__(name="csd-engine-worker", daemon=True)
        self.device = device
        self.outbox = outbox
        self.min_interval = 1.0 / progress_hz if progress_hz > 0 else 0.0
        self.commands: queue.Queue = queue.Queue()
        self._prior: Any = None
        self._prior_key: tuple | None = None

    @property
    def loaded_priors(self) -> list[str]:
        return [] if self._prior_key is None else [str(self._prior_key[0])]

    def devices(self) -> list[dict] | None:
        """One {"device", "device_name"} per worker for the handshake (None: the engine's own device)."""
        return None

    def run(self) -> None:
        while True:
            command = self.commands.get()
            if command[0] == "stop":
                return
            if command[0] == "job":
                record = command[1]
                final: Message | None = None
                try:
                    final = self._run_job(record)
                except BaseException as exc:  # noqa: BLE001 - nothing may end this thread: the engine would hang
                    final = ErrorReply.from_exception(internal_error(exc, f"job {record.job_id}"), record.job_id)
                finally:
                    try:
                        free_device_memory()  # a long-lived server hands each job's scratch memory back
                    except Exception as exc:  # noqa: BLE001
                        logger.warning("freeing memory after job %s failed: %s", record.job_id, exc)
                    # the job's last message and its end travel together: a status request answered after the
                    # result always shows the engine idle
                    self.outbox.append(
                        Outgoing(record.identity, final, record.job_id, finished=record.job_id)
                    )
            elif command[0] == "release":
                _, identity, msg_id = command
                try:
                    names = self.loaded_priors
                    self.release()
                    reply: Message = Released(names, free_device_memory())
                except Exception as exc:  # noqa: BLE001
                    reply = ErrorReply.from_exception(internal_error(exc, "release"))
                self.outbox.append(Outgoing(identity, reply, msg_id))

    # -- priors ---------------------------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the loaded prior (and engine.priors' own cache when it has one)."""
        self._prior, self._prior_key = None, None
        priors = sys.modules.get("engine.priors")
        release = getattr(priors, "release_priors", None)
        if callable(release):
            release()
        free_device_memory()

    def _prior_for(self, record: JobRecord, job: Any) -> Any:
        key = record.spec.prior_key(job)
        if key is None:
            return None
        key = (key[0], tuple(key[1]) if len(key) > 1 else ())
        if key != self._prior_key:
            self.release()
            from ..priors import load_prior  # lazy: torch/diffusers load here, not at server start

            logger.info("loading prior %s on %s", key, self.device)
            self._prior = load_prior(key[0], device=self.device, controlnets=key[1])
            self._prior_key = key
        return self._prior

    # -- jobs -----------------------------------------------------------------------------------------------

    def _send(self, record: JobRecord, message: Message) -> None:
        self.outbox.append(Outgoing(record.identity, message, record.job_id))

    def _progress_fn(self, record: JobRecord, started: float):
        last = {"t": -math.inf, "stage": None}

        def progress(event: ProgressEvent) -> None:
            now = time.monotonic()
            record.status = {
                "job_id": record.job_id,
                "task": record.spec.name,
                "stage": event.stage,
                "step": event.step,
                "total": event.total,
                "elapsed_s": now - started,
            }
            same = (event.stage, event.step, event.total) == last.get("sent") and event.preview_png is None
            if same:  # the worker and the task both announce "loading": the client hears it once
                return
            important = (
                event.preview_png is not None or event.stage != last["stage"] or event.step >= event.total
            )
            if not important and now - last["t"] < self.min_interval:
                return
            last["sent"] = (event.stage, event.step, event.total)
            last["t"], last["stage"] = now, event.stage
            loss = event.loss if event.loss is not None and math.isfinite(event.loss) else None
            eta = event.eta_s if event.eta_s is not None and math.isfinite(event.eta_s) else None
            self._send(
                record,
                Progress(
                    record.job_id,
                    event.stage,
                    int(event.step),
                    int(event.total),
                    loss,
                    float(event.elapsed_s),
                    eta,
                    event.preview_png,
                ),
            )

        return progress

    def _run_job(self, record: JobRecord) -> Message:
        """Run one job; return its last message (result, cancelled or error) for the caller to post."""
        started = time.monotonic()
        logger.info("job %s (%s) started", record.job_id, record.spec.name)
        if record.cancel.is_set():
            return Cancelled(record.job_id)
        progress = self._progress_fn(record, started)
        try:
            job = record.job if record.job is not None else record.spec.make_job(record.params, record.arrays)
            progress(ProgressEvent("loading", 0, 0, elapsed_s=time.monotonic() - started))
            prior = self._prior_for(record, job)
            result = record.spec.run(job, prior, progress, record.cancel.is_set)
            if result is None and record.cancel.is_set():
                raise CancelledError()
            meta, arrays = record.spec.pack_result(result)
            meta = dict(meta)
            meta.setdefault("elapsed_s", time.monotonic() - started)
            meta.setdefault("cancelled", record.cancel.is_set())
            logger.info("job %s finished in %.1f s", record.job_id, time.monotonic() - started)
            return Result(record.job_id, meta, {k: from_numpy(v) for k, v in arrays.items()})
        except CancelledError:
            logger.info("job %s cancelled", record.job_id)
            return Cancelled(record.job_id)
        except ProtocolError as exc:  # EngineError and its subclasses, params errors from make_job
            if exc.code == ErrorCode.CANCELLED:
                return Cancelled(record.job_id)
            logger.info("job %s failed: %s", record.job_id, exc)
            return ErrorReply.from_exception(exc, record.job_id)
        except Exception as exc:
            if is_out_of_memory(exc):
                logger.warning("job %s ran out of memory: %s", record.job_id, exc, exc_info=True)
                error = oom_error(record.params, self.device, record.spec.name)
                error.detail = str(exc).splitlines()[0][:500] if str(exc) else ""
                return ErrorReply.from_exception(error, record.job_id)
            error = internal_error(exc, f"job {record.job_id} ({record.spec.name})")
            return ErrorReply.from_exception(error, record.job_id)
