"""`serve --ray`: the server's jobs run on a pool of Ray actors instead of the local worker thread.

`RayPool` has the local `Worker`'s interface (a thread fed by `commands`, writing `Outgoing` messages into the
server's outbox) and `slots` jobs run at once, one per actor. Each `ServeActor` wraps a local `Worker`
(its progress throttling, prior cache and error mapping), so a job on an actor sends exactly the messages a
local job sends; the pool polls each busy actor for them and forwards them to the job's client, and a cancel
reaches the actor within one poll (`poll_s`). A job whose actor dies gets an `internal` error; the actor is
replaced.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from csd_blender.protocol.messages import ErrorReply, Message, Progress, Released

from ..errors import internal_error
from .local_worker import JobRecord, Outgoing

logger = logging.getLogger(__name__)


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

    def ready(self) -> str:
        """The device this actor runs jobs on (answers once the actor is up)."""
        return self.device

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
        return event is not None

    def release(self) -> list[str]:
        """Drop the loaded prior; return its names."""
        names = self.worker.loaded_priors
        self.worker.release()
        return names

    def loaded_priors(self) -> list[str]:
        return self.worker.loaded_priors


@dataclass
class _Busy:
    """A job on an actor: its record, the object ref of its final message, and whether cancel was sent."""

    record: JobRecord
    ref: Any
    started: float = field(default_factory=time.monotonic)
    cancel_sent: bool = False


class RayPool(threading.Thread):
    """Runs the server's jobs on `slots` Ray actors; the same commands as engine.serve.local_worker.Worker.

    Args:
        address: "local", "auto" or a cluster address (engine.serve.ray_support.connect).
        outbox: the server's outgoing deque.
        workers: actors (None: as many as the cluster's GPUs, or CPUs, allow).
        gpus_per_worker: GPUs each actor reserves (0 on CPU clusters).
        cpus_per_worker: CPUs each actor reserves (and its torch threads).
        progress_hz: progress events per second per job.
        poll_s: how often busy actors are asked for progress (and cancels forwarded).

    Raises:
        ValueError: Ray is not installed, the cluster cannot be reached or has no room for one actor.
    """

    kind = "ray"

    def __init__(self, address: str, outbox: deque, workers: int | None = None, gpus_per_worker: float = 1.0,
                 cpus_per_worker: float = 1.0, progress_hz: float = 5.0, poll_s: float = 0.1):
        super().__init__(name="csd-engine-ray-pool", daemon=True)
        from .ray_support import connect, pool_size, worker_lost_errors

        try:
            self.ray, self._owns_ray = connect(address)
            self.slots = pool_size(self.ray, gpus_per_worker, cpus_per_worker, workers)
        except (RuntimeError, ConnectionError) as exc:
            raise ValueError(f"--ray {address}: {exc}") from exc
        self.outbox = outbox
        self.poll_s = poll_s
        self.commands: queue.Queue = queue.Queue()
        self._lost = worker_lost_errors(self.ray)
        self._actor_cls = self.ray.remote(ServeActor).options(
            num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_concurrency=4, max_restarts=0)
        self._actor_args = ("auto", progress_hz, max(1, int(cpus_per_worker)))
        self.actors = [self._actor_cls.remote(*self._actor_args) for _ in range(self.slots)]
        self.busy: dict[int, _Busy] = {}
        self._priors: list[str] = []
        logger.info("Ray pool: %d actor(s), %g GPU and %g CPU each", self.slots, gpus_per_worker, cpus_per_worker)

    @property
    def loaded_priors(self) -> list[str]:
        return list(self._priors)

    def wait_ready(self, timeout_s: float = 300.0) -> list[str]:
        """Block until every actor is up; return their devices."""
        return self.ray.get([a.ready.remote() for a in self.actors], timeout=timeout_s)

    # -- the thread -----------------------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            try:
                command = self.commands.get(timeout=self.poll_s if self.busy else 0.5)
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
                names = sorted({n for names in self.ray.get([a.release.remote() for a in self.actors])
                                for n in names})
                self._priors = []
                reply: Message = Released(names, 0)
            except Exception as exc:  # noqa: BLE001
                reply = ErrorReply.from_exception(internal_error(exc, "release on the Ray pool"))
            self.outbox.append(Outgoing(identity, reply, msg_id))

    def _start_job(self, record: JobRecord) -> None:
        slot = next(i for i in range(self.slots) if i not in self.busy)  # the server never sends more
        record.status = {"job_id": record.job_id, "task": record.spec.name, "stage": "starting", "worker": slot}
        ref = self.actors[slot].run.remote(record.job_id, record.spec.name, record.params, record.arrays)
        self.busy[slot] = _Busy(record, ref)
        logger.info("job %s (%s) started on Ray actor %d", record.job_id, record.spec.name, slot)

    def _poll(self) -> None:
        if not self.busy:
            return
        for slot, busy in self.busy.items():
            if busy.record.cancel.is_set() and not busy.cancel_sent:
                busy.cancel_sent = True
                self.actors[slot].cancel.remote(busy.record.job_id)
        slots = list(self.busy)
        drains = [self.actors[s].drain.remote() for s in slots]
        ready, _ = self.ray.wait([self.busy[s].ref for s in slots], num_returns=len(slots), timeout=0)
        for slot, drained in zip(slots, drains):
            busy = self.busy[slot]
            try:
                messages = self.ray.get(drained)
            except self._lost:
                messages = []
            for message in messages:
                self._forward(busy.record, message, slot)
            if busy.ref in ready:
                self._finish_job(slot, busy)

    def _forward(self, record: JobRecord, message: Message, slot: int) -> None:
        if isinstance(message, Progress):
            record.status = {"job_id": record.job_id, "task": record.spec.name, "stage": message.stage,
                             "step": message.step, "total": message.total, "elapsed_s": message.elapsed_s,
                             "worker": slot}
        self.outbox.append(Outgoing(record.identity, message, record.job_id))

    def _finish_job(self, slot: int, busy: _Busy) -> None:
        del self.busy[slot]
        record = busy.record
        try:
            final = self.ray.get(busy.ref)
            for message in self.ray.get(self.actors[slot].drain.remote()):  # anything sent after the last poll
                self._forward(record, message, slot)
            self._priors = sorted(set(self._priors) | set(self.ray.get(self.actors[slot].loaded_priors.remote())))
        except self._lost as exc:
            logger.warning("the Ray actor running job %s died: %s", record.job_id, str(exc).splitlines()[0][:300])
            final = ErrorReply.from_exception(
                internal_error(exc, f"job {record.job_id}: its Ray worker died"), record.job_id)
            self._replace_actor(slot)
        except Exception as exc:  # noqa: BLE001 - a job's end always reaches its client
            final = ErrorReply.from_exception(internal_error(exc, f"job {record.job_id} on Ray"), record.job_id)
        logger.info("job %s on Ray actor %d ended (%s) after %.1f s", record.job_id, slot,
                    getattr(final, "MSG_TYPE", "?"), time.monotonic() - busy.started)
        self.outbox.append(Outgoing(record.identity, final, record.job_id, finished=record.job_id))

    def _replace_actor(self, slot: int) -> None:
        try:
            self.ray.kill(self.actors[slot], no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("killing a dead actor: %s", exc)
        self.actors[slot] = self._actor_cls.remote(*self._actor_args)

    def _stop_actors(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001
                logger.debug("killing an actor: %s", exc)
        if self._owns_ray:
            self.ray.shutdown()
