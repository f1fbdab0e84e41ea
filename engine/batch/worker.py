"""Runs batch jobs one at a time in its process (in-process, or as the body of a Ray actor).

A worker keeps the priors it loaded (engine.priors caches them per process), so a prior is loaded once per
worker, not once per job. Each job writes the single-job command's files into a scratch folder; the worker
returns their bytes, and the batch writes them under `DIR/<job id>/` (the worker may run on another machine).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from csd_blender.protocol.errors import ProtocolError

from .jobs import BatchJob, task_commands

logger = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    """What one run of a job gives back.

    Args:
        job_id: the job's id.
        ok: it finished and `files` holds its outputs.
        files: file name -> bytes of everything the command wrote (flat: the commands write one folder).
        seconds: wall time of the job in the worker (prior load included).
        error: {"code", "message", "field"} when it failed (the protocol's stable error codes).
        prior_loaded: this job loaded a prior (False: the worker's loaded prior was reused, or none is needed).
        worker: "host:pid" of the process that ran it.
    """

    job_id: str
    ok: bool
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0
    error: dict | None = None
    prior_loaded: bool = False
    worker: str = ""


def _error_record(exc: ProtocolError) -> dict:
    return {"code": exc.code.value, "message": exc.message, "field": exc.field}


class BatchWorker:
    """Runs jobs with the CLI commands' own code; `run(job, out)` never raises for a job's failure.

    Args:
        torch_threads: torch CPU threads of this process (None: leave torch's setting).
    """

    def __init__(self, torch_threads: int | None = None):
        from ..tasks import load_registries

        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        load_registries()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def pid(self) -> int:
        """This worker's process id (a Ray actor answers once it is up)."""
        return os.getpid()

    def run(self, job: BatchJob, out: str) -> JobOutcome:
        """Run `job` as `python -m engine <job.argv> --out <out>` would, returning its files instead of writing
        them to `out`.

        Args:
            job: a parsed batch job.
            out: the folder the results will live in (recorded in job.json's command).
        """
        from ..device_info import resolve_device
        from ..errors import internal_error
        from ..priors.loader import loaded_priors
        from ..serve.local_worker import free_device_memory, is_out_of_memory, oom_error

        t0 = time.perf_counter()
        before = {id(p) for p in loaded_priors()}
        outcome = JobOutcome(job.job_id, False, worker=self.name)
        logger.info("batch job %s (line %d) started on %s", job.job_id, job.line, self.name)
        command, args = task_commands()[job.task], job.namespace(out)
        try:
            with tempfile.TemporaryDirectory(prefix="csd-batch-") as scratch:
                command.run_files(args, write_dir=scratch)
                outcome.files = {p.name: p.read_bytes() for p in sorted(Path(scratch).iterdir()) if p.is_file()}
            outcome.ok = True
        except ProtocolError as exc:  # bad mesh, bad prompt for the prior, missing model, …
            outcome.error = _error_record(exc)
        except Exception as exc:  # noqa: BLE001 - one job's failure never ends the worker
            if is_out_of_memory(exc):  # the server's message: which settings to lower, at their values
                outcome.error = _error_record(oom_error(command.params(args), resolve_device(args.device), job.task))
                outcome.error["detail"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            else:  # the batch's owner runs the workers: the error's own line is theirs to read
                outcome.error = _error_record(internal_error(exc, f"batch job {job.job_id}"))
                outcome.error["detail"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            try:
                free_device_memory()
            except Exception as exc:  # noqa: BLE001
                logger.warning("freeing memory after batch job %s failed: %s", job.job_id, exc)
        outcome.prior_loaded = any(id(p) not in before for p in loaded_priors())
        outcome.seconds = time.perf_counter() - t0
        logger.info("batch job %s %s in %.1f s", job.job_id, "finished" if outcome.ok else "failed",
                    outcome.seconds)
        return outcome
