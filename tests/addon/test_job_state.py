"""JobState of a batch (no bpy): one progress over all jobs, the object named in the status line."""
from __future__ import annotations

from csd_blender.link.session import JobState


def test_batch_progress_runs_once_over_all_jobs():
    jobs = [JobState(f"j{i}", "texture", f"Ball{i}", batch_index=i, batch_total=3) for i in range(3)]
    seen = []
    for job in jobs:
        for step in (0, 5, 10):
            job.step, job.total, job.stage = step, 10, "optimising"
            seen.append(job.fraction)
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0 and seen[3] == 1 / 3
    assert jobs[1].text().startswith("Ball1 2/3, Optimising, step 10/10")
    single = JobState("j", "texture", "Suzanne")
    single.step, single.total, single.stage = 5, 20, "optimising"
    assert single.fraction == 0.25 and single.text() == "Optimising, step 5/20"


def test_a_waiting_job_shows_its_place_in_a_shared_engines_queue():
    from csd_blender.link.session import RUNNING, EngineSession
    from csd_blender.protocol.messages import Accepted, HelloReply, Progress

    job = JobState("j", "texture", "Suzanne")
    job.update(Accepted("j", queue_position=3))
    assert (job.stage, job.queue_position) == ("queued", 3) and job.text() == "Queued, position 3"
    session = EngineSession()
    session.state, session.hello, session.job = RUNNING, HelloReply("1.0", "0.1.0", "cpu", "CPU"), job
    assert session.describe()[-1] == "Queue: your job is 3rd in line (2 jobs ahead)"
    job.update(Progress("j", "queued", 0, 0, queue_position=1))  # the engine says it moved up
    assert job.text() == "Queued, position 1"
    assert session.describe()[-1] == "Queue: your job is 1st in line (starts next)"
    job.update(Progress("j", "optimising", 5, 20, loss=0.5, elapsed_s=2.0, eta_s=6.0))
    assert job.queue_position is None and job.text() == "Optimising, step 5/20, ETA 6 s"
    assert not session.describe()[-1].startswith("Queue")
    starts_now = JobState("k", "texture", "Cube")
    starts_now.update(Accepted("k", queue_position=0))
    assert starts_now.stage == "starting" and starts_now.queue_position is None
