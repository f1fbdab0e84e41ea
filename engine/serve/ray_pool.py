"""`serve --ray`: the server's jobs run on a pool of Ray actors instead of the local worker thread.

`RayPool` has the local `Worker`'s interface (a thread fed by `commands`, writing `Outgoing` messages into the
server's outbox) and `slots` jobs run at once, one per actor. Each `ServeActor` wraps a local `Worker`
(its progress throttling, prior cache and error mapping), so a job on an actor sends exactly the messages a
local job sends; the pool polls each busy actor for them and forwards them to the job's client, and a cancel
reaches the actor within one poll (`poll_s`).

The pool never waits on one actor: every call to an actor is a Ray object ref checked with `ray.wait(timeout=0)`,
so a stopped or hung actor delays nobody else's job or cancel. Each actor has a health clock: a busy actor that
leaves a progress request unanswered for `health_timeout_s` once its job has reported progress (hung, paused, its
node gone; before that the start-up allowance START_S applies) is killed and replaced,
and its job ends with `engine_died` naming why; an idle actor is pinged every few seconds and a dead one replaced
before a job is sent to it; a job whose actor turns out dead before the job started is run again on the replacement
(once). A job whose actor dies while running it ends with `engine_died`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.messages import ErrorReply, Message, Progress, Released

from ..errors import internal_error
from .local_worker import JobRecord, Outgoing

logger = logging.getLogger(__name__)
START_S = 300.0  # how long a new actor may take to come up before its job is given up


class ServeActor:
    """The body of one pool actor: runs one job at a time on a local `Worker`; `drain` and `cancel` answer
    while a job runs (the actor is threaded).

    Args:
        device: "auto" (the actor's GPU when Ray gave it one, else the CPU), "cpu", "cuda".
        progress_hz: progress events per second per job, as the local worker sends them.
        torch_threads: torch CPU threads of the actor's process.
    """

    def __init__(self, device: str = "auto", progress_hz: float = 5.0, torch_threads: int = 1):
        import torch

        from ..device_info import resolve_device
        from ..tasks import load_registries
        from .local_worker import Worker

        torch.set_num_threads(max(1, int(torch_threads)))
        load_registries()
        self.device = resolve_device(device)
        self.outbox: deque = deque()
        self.worker = Worker(self.device, self.outbox, progress_hz)  # its methods only; never started
        self.cancels: dict[str, threading.Event] = {}
        self.cancelled_early: set[str] = set()  # cancels that arrived before their job (calls may overtake)

    def ready(self) -> dict:
        """{"device", "device_name"} of the device this actor runs jobs on (answers once the actor is up)."""
        from ..device_info import device_info

        return {"device": self.device, "device_name": device_info(self.device).label}

    def run(self, job_id: str, task: str, params: Any, arrays: dict) -> Message:
        """Run one job; return its final message (Result, Cancelled or ErrorReply).

        Args:
            job_id: the submit's id.
            task: a registered task name.
            params: the validated protocol params (`device` "auto" becomes this actor's device).
            arrays: the validated input arrays (name -> numpy).
        """
        from ..registry import TASKS
        from .local_worker import free_device_memory

        if getattr(params, "device", None) == "auto":
            params.device = self.device
        record = JobRecord(job_id, b"", TASKS.get(task), params, arrays)
        self.cancels[job_id] = record.cancel
        if job_id in self.cancelled_early:
            self.cancelled_early.discard(job_id)
            record.cancel.set()
        try:
            return self.worker._run_job(record)
        except BaseException as exc:  # noqa: BLE001 - as the local worker: the actor outlives its jobs
            return ErrorReply.from_exception(internal_error(exc, f"job {job_id}"), job_id)
        finally:
            self.cancels.pop(job_id, None)
            free_device_memory()

    def drain(self) -> list[Message]:
        """The progress messages sent since the last call, oldest first."""
        out = []
        while self.outbox:
            out.append(self.outbox.popleft().message)
        return out

    def cancel(self, job_id: str) -> bool:
        """Ask the running job to stop (within one optimisation step); False when it is not running here."""
        event = self.cancels.get(job_id)
        if event is not None:
            event.set()
        else:
            self.cancelled_early.add(job_id)
        return event is not None

    def pid(self) -> int:
        """The actor's process id (for tests that stop or kill it)."""
        import os

        return os.getpid()

    def release(self) -> list[str]:
        """Drop the loaded prior; return its names."""
        names = self.worker.loaded_priors
        self.worker.release()
        return names

    def loaded_priors(self) -> list[str]:
        return self.worker.loaded_priors


@dataclass
class _Slot:
    """One pool actor and what the pool is waiting for from it.

    Args:
        actor: the Ray actor handle.
        ready: the ref of its `ready()` call (its device once up), None once answered.
        record: the job it runs (None: idle).
        job_ref: the ref of that job's final message.
        drain_ref / asked: the outstanding progress request and when it was sent (its health clock).
        ping_ref / pinged: an idle actor's outstanding health ping and when it was sent.
        final: the job's final message, held until the last progress request returns.
    """

    actor: Any
    ready: Any = None
    device: dict | None = None
    record: JobRecord | None = None
    job_ref: Any = None
    attempt: int = 0
    jobs_run: int = 0
    started: float = 0.0
    progressed: bool = False
    cancel_sent: bool = False
    drain_ref: Any = None
    asked: float = 0.0
    ping_ref: Any = None
    pinged: float = field(default_factory=time.monotonic)
    final: Message | None = None


class RayPool(threading.Thread):
    """Runs the server's jobs on `slots` Ray actors; the same commands as engine.serve.local_worker.Worker.

    Args:
        address: "local", "auto" or a cluster address (engine.serve.ray_support.connect).
        outbox: the server's outgoing deque.
        workers: actors (None: as many as the cluster's GPUs, or CPUs, allow; at least 1).
        gpus_per_worker: GPUs each actor reserves (0 on CPU clusters).
        cpus_per_worker: CPUs each actor reserves (and its torch threads).
        progress_hz: progress events per second per job.
        poll_s: how often busy actors are asked for progress (and cancels forwarded).
        health_timeout_s: a busy actor that leaves a progress request unanswered this long is replaced and its
            job ends with `engine_died`.
        idle_ping_s: how often an idle actor is asked whether it lives.

    Raises:
        ValueError: Ray is not installed, the cluster cannot be reached or has no room for one actor, or
            `workers` is below 1.
    """

    kind = "ray"

    def __init__(self, address: str, outbox: deque, workers: int | None = None, gpus_per_worker: float = 1.0,
                 cpus_per_worker: float = 1.0, progress_hz: float = 5.0, poll_s: float = 0.1,
                 health_timeout_s: float = 30.0, idle_ping_s: float = 5.0):
        super().__init__(name="csd-engine-ray-pool", daemon=True)
        from .ray_support import connect, pool_size, worker_lost_errors

        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"--ray-workers: must be at least 1, got {workers!r}")
        try:
            self.ray, self._owns_ray = connect(address)
            self.slots = pool_size(self.ray, gpus_per_worker, cpus_per_worker, workers)
        except (RuntimeError, ConnectionError) as exc:
            raise ValueError(f"--ray {address}: {exc}") from exc
        self.outbox = outbox
        self.poll_s = poll_s
        self.health_timeout_s = health_timeout_s
        self.idle_ping_s = idle_ping_s
        self.commands: queue.Queue = queue.Queue()
        self._lost = worker_lost_errors(self.ray)
        self._actor_cls = self.ray.remote(ServeActor).options(
            num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_concurrency=4, max_restarts=0)
        self._actor_args = ("auto", progress_hz, max(1, int(cpus_per_worker)))
        self.pool = [self._new_slot() for _ in range(self.slots)]
        self._priors: list[str] = []
        logger.info("Ray pool: %d actor(s), %g GPU and %g CPU each", self.slots, gpus_per_worker, cpus_per_worker)

    def _new_slot(self) -> _Slot:
        actor = self._actor_cls.remote(*self._actor_args)
        return _Slot(actor, ready=actor.ready.remote())

    @property
    def actors(self) -> list:
        return [slot.actor for slot in self.pool]

    @property
    def loaded_priors(self) -> list[str]:
        return list(self._priors)

    def devices(self) -> list[dict]:
        """{"device", "device_name"} of each actor that has answered (its own device, not the head's)."""
        return [dict(slot.device) for slot in self.pool if slot.device is not None]

    def wait_ready(self, timeout_s: float = 300.0) -> list[str]:
        """Block until every actor is up; return their devices (for tests and start-up; not the pool thread)."""
        answers = self.ray.get([slot.actor.ready.remote() for slot in self.pool], timeout=timeout_s)
        for slot, answer in zip(self.pool, answers):
            slot.device = answer
        return [a["device"] for a in answers]

    # -- the thread -----------------------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            busy = any(slot.record is not None for slot in self.pool)
            try:
                command = self.commands.get(timeout=self.poll_s if busy else min(0.5, self.poll_s * 5))
            except queue.Empty:
                command = None
            try:
                if command is not None and command[0] == "stop":
                    self._stop_actors()
                    return
                if command is not None:
                    self._command(command)
                self._poll()
            except Exception as exc:  # noqa: BLE001 - the pool thread must outlive any one failure
                internal_error(exc, "the Ray pool")
                time.sleep(0.1)

    def _command(self, command: tuple) -> None:
        if command[0] == "job":
            self._start_job(command[1])
        elif command[0] == "release":
            _, identity, msg_id = command
            try:
                idle = [slot.actor for slot in self.pool if slot.record is None]
                refs = [actor.release.remote() for actor in idle]
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=min(10.0, self.health_timeout_s))
                names = sorted({n for ref in ready for n in self.ray.get(ref)})
                self._priors = []
                reply: Message = Released(names, 0)
            except Exception as exc:  # noqa: BLE001
                reply = ErrorReply.from_exception(internal_error(exc, "release on the Ray pool"))
            self.outbox.append(Outgoing(identity, reply, msg_id))

    def _start_job(self, record: JobRecord, attempt: int = 1, index: int | None = None) -> None:
        if index is None:  # the server never sends more jobs than there are free slots; warm actors first
            index = min((i for i, slot in enumerate(self.pool) if slot.record is None),
                        key=lambda i: self.pool[i].jobs_run == 0)
        self.pool[index].jobs_run += 1
        slot = self.pool[index]
        record.status = {"job_id": record.job_id, "task": record.spec.name, "stage": "starting", "worker": index}
        slot.record, slot.attempt, slot.started = record, attempt, time.monotonic()
        slot.progressed = slot.cancel_sent = False
        slot.final = slot.drain_ref = slot.ping_ref = None
        slot.job_ref = slot.actor.run.remote(record.job_id, record.spec.name, record.params, record.arrays)
        logger.info("job %s (%s) started on Ray actor %d (attempt %d)", record.job_id, record.spec.name, index,
                    attempt)

    # -- polling: never blocks --------------------------------------------------------------------------------

    def _poll(self) -> None:
        now = time.monotonic()
        for slot in self.pool:
            if slot.record is not None:
                if slot.record.cancel.is_set() and not slot.cancel_sent:
                    slot.cancel_sent = True
                    slot.actor.cancel.remote(slot.record.job_id)
                if slot.drain_ref is None:
                    slot.drain_ref, slot.asked = slot.actor.drain.remote(), now
            elif slot.ping_ref is None and now - slot.pinged > self.idle_ping_s:
                slot.ping_ref, slot.pinged = slot.actor.ready.remote(), now
        refs = [r for slot in self.pool for r in (slot.ready, slot.job_ref, slot.drain_ref, slot.ping_ref) if r]
        ready = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        for index, slot in enumerate(self.pool):
            if slot.ready in ready:
                self._answer(index, slot, "ready")
            if slot.ping_ref in ready:
                self._answer(index, slot, "ping")
            if slot.job_ref in ready:
                self._job_done(index, slot)
            if slot.drain_ref in ready:
                self._drained(index, slot)
            # until the job's first progress (the actor starting, importing and loading its prior with the GIL held
            # on a busy machine) the longer start-up allowance; after it, silence means hung
            limit = self.health_timeout_s if slot.progressed else max(self.health_timeout_s, START_S)
            if slot.record is not None and slot.drain_ref is not None and now - slot.asked > limit:
                self._hung(index, slot, now - slot.asked)

    def _answer(self, index: int, slot: _Slot, what: str) -> None:
        """An idle actor's ready/ping answer: note its device, or replace it when it died."""
        ref = slot.ready if what == "ready" else slot.ping_ref
        if what == "ready":
            slot.ready = None
        else:
            slot.ping_ref = None
        try:
            answer = self.ray.get(ref, timeout=0)
        except self._lost as exc:
            if slot.record is None:
                logger.warning("idle Ray actor %d died (%s); replacing it", index, _first_line(exc))
                self._replace(index)
            return
        if what == "ready":
            slot.device = answer
            logger.info("Ray actor %d runs jobs on %s (%s)", index, answer["device"], answer["device_name"])

    def _drained(self, index: int, slot: _Slot) -> None:
        ref, slot.drain_ref = slot.drain_ref, None
        try:
            messages = self.ray.get(ref, timeout=0)
        except self._lost:
            messages = []
        for message in messages:
            slot.progressed = True
            self._forward(slot.record, message, index)
        if slot.final is not None:
            self._end(index, slot, slot.final)

    def _job_done(self, index: int, slot: _Slot) -> None:
        ref, slot.job_ref = slot.job_ref, None
        record = slot.record
        try:
            final = self.ray.get(ref, timeout=0)
        except self._lost as exc:
            if slot.attempt == 1 and not slot.progressed:  # died before the job began: run it on a fresh actor
                logger.warning("Ray actor %d was dead before job %s started (%s); running it on a replacement",
                               index, record.job_id, _first_line(exc))
                self._replace(index)
                self._start_job(record, attempt=2, index=index)
                return
            logger.warning("the Ray actor running job %s died: %s", record.job_id, _first_line(exc))
            self._replace(index)
            self._end(index, self.pool[index], _died(record, f"its Ray worker died ({type(exc).__name__})"),
                      record=record)
            return
        except Exception as exc:  # noqa: BLE001 - a job's end always reaches its client
            final = ErrorReply.from_exception(internal_error(exc, f"job {record.job_id} on Ray"), record.job_id)
        slot.final = final
        if slot.drain_ref is None:  # one last progress request: what the job sent after the last poll
            slot.drain_ref, slot.asked = slot.actor.drain.remote(), time.monotonic()

    def _hung(self, index: int, slot: _Slot, silent_s: float) -> None:
        record = slot.record
        logger.warning("Ray actor %d running job %s did not answer for %.0f s (hung or stopped); replacing it",
                       index, record.job_id, silent_s)
        self._replace(index)
        self._end(index, self.pool[index], _died(record, f"its Ray worker stopped answering for {silent_s:.0f} s "
                                                         "(hung, paused or its machine lost) and was replaced; "
                                                         "submit it again"), record=record)

    def _forward(self, record: JobRecord, message: Message, index: int) -> None:
        if isinstance(message, Progress):
            record.status = {"job_id": record.job_id, "task": record.spec.name, "stage": message.stage,
                             "step": message.step, "total": message.total, "elapsed_s": message.elapsed_s,
                             "worker": index}
        self.outbox.append(Outgoing(record.identity, message, record.job_id))

    def _end(self, index: int, slot: _Slot, final: Message, record: JobRecord | None = None) -> None:
        """The job's last message: its slot is free again (the server starts the next job on it)."""
        record = record or slot.record
        if slot.record is record:
            slot.record = slot.job_ref = slot.final = None
            slot.pinged = time.monotonic()
        if getattr(final, "MSG_TYPE", "") == "result":
            self._priors = sorted(set(self._priors) | {str(getattr(record.params, "model", ""))} - {""})
        logger.info("job %s on Ray actor %d ended (%s) after %.1f s", record.job_id, index,
                    getattr(final, "MSG_TYPE", "?"), time.monotonic() - record.submitted_at)
        self.outbox.append(Outgoing(record.identity, final, record.job_id, finished=record.job_id))

    def _replace(self, index: int) -> None:
        try:
            self.ray.kill(self.pool[index].actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("killing a dead actor: %s", exc)
        self.pool[index] = self._new_slot()

    def _stop_actors(self) -> None:
        for slot in self.pool:
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001
                logger.debug("killing an actor: %s", exc)
        if self._owns_ray:
            self.ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _died(record: JobRecord, why: str) -> ErrorReply:
    return ErrorReply(record.job_id, ErrorCode.ENGINE_DIED.value, f"job {record.job_id}: {why}")
