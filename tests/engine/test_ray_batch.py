"""`python -m engine batch --ray`: two CPU actors on a local Ray runtime give the same results as jobs run one by
one, and a job whose actor is killed in the middle is retried without losing another job."""

from __future__ import annotations

import os
import signal
import threading
import time

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
    # the long job starts last, on a warm actor; killed, it is retried on the other warm actor (the dead one's
    # replacement is still starting)
    path = write_batch(tmp_path, [{"seed": 2}, {"seed": 3}, {"seed": 1, "steps": 100}])
    jobs, _ = read_jobs(path)
    events: list[tuple[str, int]] = []
    killed: list[int] = []

    def kill_soon(slot: int) -> None:
        pid = executor.worker_pid(slot)  # the actor is up and runs the job
        time.sleep(0.5)  # 100 steps take ~4 s on a warm actor on the dev box: the job is under way
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    def on_event(event, job, info):
        events.append((event, job.line))
        if event == "started" and job.line == 3 and info["attempt"] == 1:
            threading.Thread(target=kill_soon, args=(info["slot"],), daemon=True).start()

    summary = run_batch(jobs, tmp_path / "out", executor, max_retries=2, quiet=True, on_event=on_event)
    assert killed and ("worker_died", 3) in events, events
    by_line = {j.line: j for j in summary.jobs}
    assert by_line[3].status == "done" and by_line[3].attempts == 2 and len(by_line[3].worker_deaths) == 1
    assert "Actor" in by_line[3].worker_deaths[0], by_line[3].worker_deaths
    assert not by_line[3].prior_loaded  # the retry ran on a warm actor, not on the dead one's cold replacement
    assert all(by_line[n].status == "done" and by_line[n].attempts == 1 for n in (1, 2))
    assert len(texture_hashes(tmp_path / "out")) == 3
