"""JobState of a batch (no bpy): one progress over all jobs, the object named in the status line."""
from __future__ import annotations

from csd_blender.engine_session import JobState


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
