"""Where batch jobs run: `InProcess` (one after another in this process) or `RayActors` (one actor per slot).

Both give the driver the same four calls: `start(slot, job, out)`, `finished(timeout_s)` → [(slot, outcome)],
`replace(slot)` after a worker died, `close()`. An outcome is a JobOutcome, or a WorkerLost when the process
running the job died (killed, crashed, its node lost): the driver retries those.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .jobs import BatchJob
from .worker import BatchWorker, JobOutcome

logger = logging.getLogger(__name__)


@dataclass
class WorkerLost:
    """The worker running a job died before answering.

    Args:
        reason: one line from Ray (which actor, why).
    """

    reason: str


class InProcess:
    """One worker in this process: `finished()` runs the started job to its end.

    Args:
        torch_threads: torch CPU threads (None: torch's default).
    """

    mode = "in-process"

    def __init__(self, torch_threads: int | None = None):
        self.worker = BatchWorker(torch_threads)
        self.slots = 1
        self._started: tuple[int, BatchJob, str] | None = None

    def worker_pid(self, slot: int) -> int:
        return self.worker.pid()

    def start(self, slot: int, job: BatchJob, out: str) -> None:
        self._started = (slot, job, out)

    def finished(self, timeout_s: float) -> list[tuple[int, JobOutcome | WorkerLost]]:
        if self._started is None:
            return []
        slot, job, out = self._started
        self._started = None
        return [(slot, self.worker.run(job, out))]

    def replace(self, slot: int) -> None:  # an in-process worker cannot die without the batch
        pass

    def close(self) -> None:
        pass


class RayActors:
    """`workers` Ray actors running BatchWorker, each holding its priors between jobs.

    Args:
        address: "local", "auto" or a cluster address (engine.serve.ray_support.connect).
        workers: actors to start (None: as many as the cluster's GPUs/CPUs allow).
        gpus_per_job: GPUs each actor reserves (a job runs on its actor's GPU; 0 on CPU clusters).
        cpus_per_job: CPUs each actor reserves; also its torch thread count.
        max_jobs: never start more actors than this (the number of jobs to run).
    """

    mode = "ray"

    def __init__(self, address: str, workers: int | None = None, gpus_per_job: float = 1.0,
                 cpus_per_job: float = 1.0, max_jobs: int | None = None):
        from ..serve.ray_support import connect, pool_size, worker_lost_errors

        self.ray, self._owns_ray = connect(address)
        try:
            wanted = min(w for w in (workers, max_jobs) if w) if (workers or max_jobs) else None
            self.slots = pool_size(self.ray, gpus_per_job, cpus_per_job, wanted)
        except BaseException:
            self.close()
            raise
        self._lost = worker_lost_errors(self.ray)
        self._task_error = self.ray.exceptions.RayTaskError
        self._actor_cls = self.ray.remote(BatchWorker).options(
            num_gpus=gpus_per_job, num_cpus=cpus_per_job, max_restarts=0, max_concurrency=1)
        self._threads = max(1, int(cpus_per_job))
        self._pids: list[Any] = []  # per slot: an object ref of its actor's pid (ready once the actor is up)
        self.actors = [self._new_actor() for _ in range(self.slots)]
        self._running: dict[Any, int] = {}  # object ref -> slot
        logger.info("batch on Ray: %d worker(s), %g GPU and %g CPU each", self.slots, gpus_per_job, cpus_per_job)

    def _new_actor(self, slot: int | None = None) -> Any:
        actor = self._actor_cls.remote(self._threads)
        pid = actor.pid.remote()  # asked before any job, so it answers as soon as the actor is up
        if slot is None:
            self._pids.append(pid)
        else:
            self._pids[slot] = pid
        return actor

    def worker_pid(self, slot: int) -> int:
        """The process id of slot's actor (waits until it is up)."""
        return self.ray.get(self._pids[slot])

    def start(self, slot: int, job: BatchJob, out: str) -> None:
        self._running[self.actors[slot].run.remote(job, out)] = slot

    def finished(self, timeout_s: float) -> list[tuple[int, JobOutcome | WorkerLost]]:
        if not self._running:
            time.sleep(min(timeout_s, 0.05))
            return []
        refs = list(self._running)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout_s)  # back as soon as one job ends
        if ready and len(refs) > 1:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)  # and every other that has ended
        done: list[tuple[int, JobOutcome | WorkerLost]] = []
        for ref in ready:
            slot = self._running.pop(ref)
            try:
                done.append((slot, self.ray.get(ref)))
            except self._task_error as exc:  # the worker raised (a defect): this job failed, the worker lives
                slot_job = getattr(exc, "cause", None) or exc
                logger.error("batch worker %d raised: %s", slot, slot_job)
                done.append((slot, JobOutcome("", False, error={
                    "code": "internal", "message": f"the batch worker raised {type(slot_job).__name__}",
                    "field": None})))
            except self._lost as exc:
                reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                logger.warning("batch worker %d died: %s", slot, reason)
                done.append((slot, WorkerLost(f"{type(exc).__name__}: {reason}")))
        return done

    def replace(self, slot: int) -> None:
        """Start a fresh actor in `slot` (its predecessor died)."""
        try:
            self.ray.kill(self.actors[slot], no_restart=True)
        except Exception as exc:  # noqa: BLE001 - it is already gone
            logger.debug("killing the dead actor %d: %s", slot, exc)
        self.actors[slot] = self._new_actor(slot)

    def close(self) -> None:
        """Stop the actors (and the Ray runtime this executor started)."""
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001
                logger.debug("killing actor: %s", exc)
        self.actors = []
        if self._owns_ray:
            self.ray.shutdown()
