"""`python -m engine batch --ray`: two CPU actors on a local Ray runtime give the same results as jobs run one by
one, and a job whose actor is killed in the middle is retried without losing another job."""

from __future__ import annotations

import os
import signal

import pytest

pytest.importorskip("ray")

from batch_jobs import PROMPTS, texture_hashes, write_batch
from ray_runtime import local_ray

from engine.batch.driver import run_batch
from engine.batch.executors import InProcess, RayActors
from engine.batch.jobs import read_jobs

USES_RAY = True  # conftest.py keeps the runtime (tests/ray_runtime.py) for the next Ray module


@pytest.fixture(scope="module")
def executor():
    """Two one-CPU actors on a local two-CPU Ray runtime, shared by the module's tests (start-up is slow)."""
    local_ray()
    actors = RayActors("local", gpus_per_job=0, cpus_per_job=1)
    yield actors
    actors.close()


def test_six_jobs_on_two_workers_match_the_jobs_run_one_by_one(tmp_path, executor):
    path = write_batch(tmp_path, [{"prompt": prompt, "seed": seed} for seed, prompt in enumerate(PROMPTS)])
    jobs, _ = read_jobs(path)
    assert executor.slots == 2
    summary = run_batch(jobs, tmp_path / "ray", executor, quiet=True)
    assert summary.counts()["done"] == 6, summary.table()
    assert len({j.worker for j in summary.jobs}) == 2  # both actors ran jobs
    assert sum(j.prior_loaded for j in summary.jobs) == 2  # one prior load per actor, not per job
    alone = run_batch(jobs, tmp_path / "alone", InProcess(), quiet=True)
    assert alone.counts()["done"] == 6
    assert texture_hashes(tmp_path / "ray") == texture_hashes(tmp_path / "alone")
    assert len(set(texture_hashes(tmp_path / "ray").values())) == 6
    for job in jobs:  # the files themselves, byte for byte (job.json holds timings, so it differs)
        for name in ("texture.png", "textured.obj"):
            assert (tmp_path / "ray" / job.job_id / name).read_bytes() == \
                (tmp_path / "alone" / job.job_id / name).read_bytes()


def test_a_job_whose_worker_is_killed_is_retried_and_no_other_job_is_lost(tmp_path, executor):
    # Deterministic (issue 22, finding 11): the long job's actor is killed in the driver's own "started" callback,
    # before the driver looks for finished jobs again, so the job can neither finish first nor be killed late. The
    # earlier version slept 0.5 s in a thread and then required the retry to land on the other, warm actor: whether
    # that actor was free when the death was seen depended on how fast the other jobs ran on a loaded machine. Where
    # a retry runs (warm workers first) is the driver's rule, tested without timing in test_batch_retry_order.py.
    path = write_batch(tmp_path, [{"seed": 2}, {"seed": 3}, {"seed": 1}])  # how long a job runs no longer matters
    jobs, _ = read_jobs(path)
    events: list[tuple[str, int]] = []
    killed: list[int] = []

    def on_event(event, job, info):
        events.append((event, job.line))
        if event == "started" and job.line == 3 and info["attempt"] == 1:
            pid = executor.worker_pid(info["slot"])  # the actor is up (its pid answered) and has the job
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    summary = run_batch(jobs, tmp_path / "out", executor, max_retries=2, quiet=True, on_event=on_event)
    assert killed and ("worker_died", 3) in events, events
    by_line = {j.line: j for j in summary.jobs}
    assert by_line[3].status == "done" and by_line[3].attempts == 2 and len(by_line[3].worker_deaths) == 1
    assert "Actor" in by_line[3].worker_deaths[0], by_line[3].worker_deaths
    assert all(by_line[n].status == "done" and by_line[n].attempts == 1 for n in (1, 2))
    assert len(texture_hashes(tmp_path / "out")) == 3
    alone = run_batch(jobs[2:], tmp_path / "alone", InProcess(), quiet=True)  # the retry's result is the job's
    assert alone.counts()["done"] == 1
    assert texture_hashes(tmp_path / "out")[jobs[2].job_id] == texture_hashes(tmp_path / "alone")[jobs[2].job_id]
