"""A batch's record: one entry per job in `DIR/summary.json` (rewritten atomically after every change) and the
table the command prints at the end."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATUSES = ("done", "failed", "pending", "running", "interrupted")


@dataclass
class JobEntry:
    """One job's line in summary.json.

    Args:
        job_id: content-derived id (also its result folder's name).
        line: its line in the batch file.
        task: texture / edit / generate.
        status: "done", "failed", "pending", "running" or "interrupted" (the batch stopped while it ran).
        previous_run: done by an earlier run of the batch (skipped in this one).
        attempts: times this run started it (a dead worker's job is started again).
        worker_deaths: why each retried attempt ended (the worker died).
        seconds: the finishing attempt's wall time in the worker.
        worker: "host:pid" of the worker that finished it.
        prior_loaded: that attempt loaded a prior (False: it reused the worker's).
        error: {"code", "message", "field"[, "detail"]} of a failed job.
        out: its result folder.
    """

    job_id: str
    line: int
    task: str
    status: str = "pending"
    previous_run: bool = False
    attempts: int = 0
    worker_deaths: list = field(default_factory=list)
    seconds: float | None = None
    worker: str = ""
    prior_loaded: bool = False
    error: dict | None = None
    out: str = ""


@dataclass
class BatchSummary:
    """Everything summary.json holds.

    Args:
        batch_file: the JSONL file.
        mode: "in-process" or "ray".
        workers: jobs that ran at once.
        jobs: one entry per job, in file order.
        invalid_lines: lines skipped with --skip-invalid: {"line", "error"}.
        wall_s: seconds this run took.
    """

    batch_file: str
    mode: str
    workers: int
    jobs: list[JobEntry] = field(default_factory=list)
    invalid_lines: list = field(default_factory=list)
    wall_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Jobs per status (done includes previous runs' jobs)."""
        return {s: sum(1 for j in self.jobs if j.status == s) for s in STATUSES}

    def write(self, path: str | Path) -> None:
        """Write summary.json atomically (a temporary file beside it, then os.replace)."""
        path = Path(path)
        data = {**asdict(self), "counts": self.counts()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".summary-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a summary is as readable as the results
        os.replace(tmp, path)

    def table(self) -> str:
        """A fixed-width table: one row per job, then the counts."""
        rows = [("line", "job", "status", "tries", "seconds", "worker", "error")]
        for j in self.jobs:
            status = "done (earlier run)" if j.previous_run else j.status
            error = f"[{j.error['code']}] {j.error['message']}" if j.error else ""
            seconds = "" if j.seconds is None else f"{j.seconds:.1f}"
            rows.append((str(j.line), j.job_id, status, str(j.attempts), seconds, j.worker, error[:70]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        lines.append(f"{len(self.jobs)} job(s): {counts}; {self.workers} worker(s) ({self.mode}), "
                     f"{self.wall_s:.0f} s")
        return "\n".join(line.rstrip() for line in lines)


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
