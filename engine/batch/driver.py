"""Runs a batch: skips jobs an earlier run finished, hands the rest to free workers, retries a dead worker's job,
records every outcome in summary.json and writes each job's files to `DIR/<job id>/` as one atomic rename."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csd_blender.protocol.errors import ErrorCode

from .executors import WorkerLost
from .jobs import BatchJob
from .summary import BatchSummary, JobEntry
from .worker import JobOutcome

logger = logging.getLogger(__name__)

DONE_MARKER = "job.json"  # the single-job commands write it last; a result folder appears only complete
EventFn = Callable[[str, BatchJob, dict], None]


def result_dir(out_dir: str | Path, job: BatchJob) -> Path:
    """Where `job`'s files go: `out_dir/<job id>/`."""
    return Path(out_dir) / job.job_id


def is_finished(out_dir: str | Path, job: BatchJob) -> bool:
    """An earlier run finished `job` (its result folder holds job.json)."""
    return (result_dir(out_dir, job) / DONE_MARKER).is_file()


def write_results(out_dir: str | Path, job: BatchJob, files: dict[str, bytes]) -> Path:
    """Write a job's files into a hidden staging folder, then rename it to `out_dir/<job id>/`.

    Args:
        out_dir: the batch's output folder.
        job: the job.
        files: file name -> bytes (a JobOutcome's files).
    """
    final = result_dir(out_dir, job)
    stage = Path(out_dir) / f".{job.job_id}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name, data in files.items():
        (stage / Path(name).name).write_bytes(data)
    if final.exists():  # a folder without job.json: left by something else; replaced by the full result
        shutil.rmtree(final)
    os.replace(stage, final)
    return final


class _Bar:
    """One tqdm bar over the jobs this run starts: done / running / failed, with tqdm's ETA."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="job", desc="batch", dynamic_ncols=True)

    def show(self, finished: int, running: int, failed: int, retried: int) -> None:
        if self.bar is None:
            return
        self.bar.update(finished - self.bar.n)
        self.bar.set_postfix_str(f"running {running}, failed {failed}, retried {retried}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(jobs: list[BatchJob], out_dir: str | Path, executor: Any, max_retries: int = 2,
              batch_file: str = "", invalid_lines: list | None = None, quiet: bool = False,
              on_event: EventFn | None = None) -> BatchSummary:
    """Run every job not finished by an earlier run; return the summary (also written to out_dir/summary.json).

    A job's failure is recorded and the batch goes on; a job whose worker died is started again (on a fresh
    worker) up to `max_retries` times, then recorded as failed with code `engine_died`. An interruption
    (Ctrl-C) records the jobs under way as "interrupted" and re-raises; running the batch again redoes only them
    and the pending and failed ones.

    Args:
        jobs: parsed jobs (engine.batch.jobs.read_jobs).
        out_dir: the output folder (created).
        executor: an engine.batch.executors InProcess or RayActors.
        max_retries: extra starts allowed for a job whose worker died.
        batch_file: recorded in the summary.
        invalid_lines: lines skipped with --skip-invalid, recorded in the summary.
        quiet: no progress bar.
        on_event: called as (event, job, info) with event "started" (info: slot, attempt), "done" or "failed"
            once its files are written (info: error, seconds in the worker, worker), "worker_died" (info:
            reason) — for tests and tools.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = BatchSummary(batch_file, executor.mode, executor.slots, invalid_lines=list(invalid_lines or []))
    entries: dict[str, JobEntry] = {}
    todo: deque[BatchJob] = deque()
    for job in jobs:
        entry = JobEntry(job.job_id, job.line, job.task, out=str(result_dir(out_dir, job)))
        if is_finished(out_dir, job):
            entry.status, entry.previous_run = "done", True
        else:
            todo.append(job)
        entries[job.job_id] = entry
        summary.jobs.append(entry)
    summary_path = out_dir / "summary.json"
    summary.write(summary_path)
    emit = on_event or (lambda event, job, info: None)
    busy: dict[int, BatchJob] = {}
    cold: set[int] = set()  # slots whose worker was replaced: it still has to start and load its prior
    finished = failed = retried = 0
    started = False
    bar = _Bar(len(todo), quiet)
    try:
        while todo or busy:
            for slot in sorted(range(executor.slots), key=lambda s: s in cold):  # warm workers first
                if slot not in busy and todo:
                    job = todo.popleft()
                    entry = entries[job.job_id]
                    entry.status, entry.attempts = "running", entry.attempts + 1
                    busy[slot] = job
                    executor.start(slot, job, str(result_dir(out_dir, job)))
                    emit("started", job, {"slot": slot, "attempt": entry.attempts})
                    started = True
            if started:  # a batch killed now (kill -9) leaves a summary that shows what was running
                summary.write(summary_path)
                started = False
            bar.show(finished, len(busy), failed, retried)
            for slot, outcome in executor.finished(0.25):
                job = busy.pop(slot)
                entry = entries[job.job_id]
                cold.discard(slot)
                if isinstance(outcome, WorkerLost):
                    entry.worker_deaths.append(outcome.reason)
                    executor.replace(slot)
                    cold.add(slot)
                    emit("worker_died", job, {"reason": outcome.reason})
                    if len(entry.worker_deaths) <= max_retries:
                        retried += 1
                        entry.status = "pending"
                        todo.appendleft(job)
                        continue
                    outcome = JobOutcome(job.job_id, False, error={
                        "code": ErrorCode.ENGINE_DIED.value, "field": None,
                        "message": f"its worker died {len(entry.worker_deaths)} time(s); last: {outcome.reason}"})
                _record(out_dir, job, entry, outcome)
                finished += 1
                failed += entry.status == "failed"
                emit(entry.status, job, {"error": entry.error, "seconds": outcome.seconds, "worker": entry.worker})
                summary.write(summary_path)
            bar.show(finished, len(busy), failed, retried)
    except BaseException:
        for job in busy.values():
            entries[job.job_id].status = "interrupted"
        raise
    finally:
        bar.close()
        summary.wall_s = time.perf_counter() - t0
        summary.write(summary_path)
    return summary


def _record(out_dir: Path, job: BatchJob, entry: JobEntry, outcome: JobOutcome) -> None:
    entry.seconds, entry.worker, entry.prior_loaded = round(outcome.seconds, 2), outcome.worker, outcome.prior_loaded
    if outcome.ok:
        write_results(out_dir, job, outcome.files)
        entry.status, entry.error = "done", None
    else:
        entry.status, entry.error = "failed", outcome.error
        logger.info("batch job %s (line %d) failed: %s", job.job_id, job.line, outcome.error)
