"""Where the batch driver runs a job whose worker died (issue 22, finding 11): on a warm worker when one is free,
on the dead one's replacement otherwise; tested with a scripted executor, so no timing decides it."""

from __future__ import annotations

from engine.batch.driver import run_batch
from engine.batch.executors import WorkerLost
from engine.batch.jobs import BatchJob
from engine.batch.worker import JobOutcome


class Scripted:
    """Two slots; `finished()` ends the started jobs in the order `script` names them (job line -> outcome)."""

    mode = "scripted"
    slots = 2

    def __init__(self, script: list[tuple[int, str]]):
        self.script = list(script)
        self.running: dict[int, BatchJob] = {}
        self.starts: list[tuple[int, int, bool]] = []  # (line, slot, slot was replaced)
        self.replaced: set[int] = set()

    def start(self, slot, job, out):
        self.starts.append((job.line, slot, slot in self.replaced))
        self.running[slot] = job

    def finished(self, timeout_s):
        if not self.script:
            return []
        line, outcome = self.script[0]
        slot = next((s for s, j in self.running.items() if j.line == line), None)
        if slot is None:
            return []
        self.script.pop(0)
        del self.running[slot]
        if outcome == "died":
            return [(slot, WorkerLost("ActorDiedError: killed"))]
        return [(slot, JobOutcome(f"job{line}", True, files={}, worker=f"slot{slot}"))]

    def replace(self, slot):
        self.replaced.add(slot)

    def close(self):
        pass


def _jobs(n: int) -> list[BatchJob]:
    return [BatchJob(i, "texture", [], f"texture-{i:016x}") for i in range(1, n + 1)]


def test_a_retry_goes_to_a_free_warm_worker_not_the_cold_replacement(tmp_path):
    # jobs 1 and 2 start on slots 0 and 1; job 2 finishes, job 3 starts on slot 1; job 1's worker dies while slot 1
    # runs job 3 ... then job 3 finishes: the retry of job 1 finds slot 0 (replaced, cold) and nothing else free
    executor = Scripted([(2, "done"), (3, "done"), (1, "died"), (1, "done")])
    run_batch(_jobs(3), tmp_path, executor, quiet=True)
    assert executor.starts[-1] == (1, 1, False), executor.starts  # slot 1 was warm and free: the retry went there


def test_with_no_warm_worker_free_the_retry_runs_on_the_replacement(tmp_path):
    executor = Scripted([(1, "died"), (2, "done"), (1, "done")])
    run_batch(_jobs(2), tmp_path, executor, quiet=True)
    assert executor.starts[2] == (1, 0, True), executor.starts
