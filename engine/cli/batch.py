"""`python -m engine batch JOBS.jsonl --out DIR`: many CLI jobs, in this process or on a Ray cluster.

Exit status: 0 when every job is done, 1 when some failed (summary.json says why), 2 when the batch file
is invalid (the line is named and no job runs) or the Ray cluster cannot be used, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_batch_parser(subparsers) -> None:
    """Register `batch`: run a JSONL file of texture / edit / generate jobs."""
    p = subparsers.add_parser(
        "batch", help="run a JSONL file of jobs (one CLI command's options per line) in-process or on Ray",
        description='Each line is one job: {"task": "texture", "mesh": "ball.obj", "prompt": "a red sphere", '
                    '"steps": 300, "seed": 1} takes the options of `python -m engine texture` (edit, generate '
                    'likewise). Results go to DIR/<job id>/ exactly as the single-job command writes them; '
                    'DIR/summary.json records every job. A rerun skips finished jobs.')
    p.add_argument("jobs", help="the JSONL batch file (relative paths inside it are relative to its folder)")
    p.add_argument("--out", required=True, help="output folder: DIR/<job id>/ per job and DIR/summary.json")
    p.add_argument("--ray", default=None, metavar="ADDRESS|local",
                   help="run on Ray: 'local' starts a runtime on this machine, 'auto' joins the cluster started "
                        "here with `ray start`, or ray://HOST:10001; without it jobs run one after another here")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers (default: as many as the cluster's GPUs, or CPUs, allow)")
    p.add_argument("--gpus-per-job", type=float, default=1.0, help="GPUs each Ray worker reserves (0 on CPUs)")
    p.add_argument("--cpus-per-job", type=float, default=1.0,
                   help="CPUs each Ray worker reserves (and its torch threads)")
    p.add_argument("--max-retries", type=int, default=2, help="restarts of a job whose worker died")
    p.add_argument("--skip-invalid", action="store_true",
                   help="run the valid lines and record the invalid ones instead of refusing to start")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    """Validate every line, then run the batch and print its summary table."""
    from ..batch.driver import run_batch
    from ..batch.executors import InProcess, RayActors
    from ..batch.jobs import BatchFileError, read_jobs

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.max_retries < 0 or (args.workers is not None and args.workers < 1):
        print("error: --max-retries must be >= 0 and --workers >= 1", file=sys.stderr)
        return 2
    try:
        jobs, invalid = read_jobs(args.jobs, skip_invalid=args.skip_invalid)
    except BatchFileError as exc:
        print(f"error: {args.jobs}: {exc}; no job was started", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.jobs}: {exc}", file=sys.stderr)
        return 2
    for exc in invalid:
        print(f"warning: {args.jobs}: skipping {exc}", file=sys.stderr)
    if not jobs:
        print(f"error: {args.jobs} holds no valid job", file=sys.stderr)
        return 2
    try:
        executor = (RayActors(args.ray, args.workers, args.gpus_per_job, args.cpus_per_job, max_jobs=len(jobs))
                    if args.ray else InProcess())
    except (RuntimeError, ValueError, ConnectionError) as exc:
        print(f"error: cannot use Ray at {args.ray}: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_batch(jobs, args.out, executor, args.max_retries, batch_file=str(Path(args.jobs).resolve()),
                            invalid_lines=[{"line": e.line, "error": e.detail} for e in invalid], quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"error: interrupted; run the same command again to finish the batch ({args.out}/summary.json)",
              file=sys.stderr)
        return 130
    finally:
        executor.close()
    print(summary.table())
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 0 if summary.counts()["failed"] == 0 else 1
