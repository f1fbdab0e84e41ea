"""Batch benchmark: jobs per hour for 1 and 2 workers and the per-job cost of running on Ray (prints a table).

Usage: .venv/bin/python bench/batch.py [--jobs 8] [--steps 40] [--texture-size 128] [--cpus 2]

Short toy-prior texture jobs on the bundled Spot mesh, CPU, one torch thread per worker. Three runs of the same
jobs: in-process (1 worker), Ray with 1 actor, Ray with 2 actors (a local Ray runtime of `--cpus` CPUs). Each
run first warms its workers (one job per worker: process start, torch import, prior load) so the figures are
the steady state. "overhead/job" is, per job, the time from dispatch to its files being written minus the
job's own time in the worker: scheduling, argument and result transfer and writing the files; the Ray rows'
excess over the in-process row is what Ray adds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from engine.batch.driver import run_batch
from engine.batch.executors import InProcess, RayActors
from engine.batch.jobs import read_jobs
from engine.commands.texture import DEMO_MESH

PROMPTS = ("a red sphere", "a blue sphere", "a green striped sphere", "a yellow cube", "a blue striped sphere",
           "a red striped cube", "a green sphere", "a yellow striped sphere")


def write_jobs(folder: Path, n: int, steps: int, size: int, first_seed: int) -> Path:
    """n texture jobs (distinct prompt/seed) as a JSONL file."""
    path = folder / f"jobs-{first_seed}.jsonl"
    lines = [json.dumps({"task": "texture", "mesh": str(DEMO_MESH), "prompt": PROMPTS[i % len(PROMPTS)],
                         "seed": first_seed + i, "steps": steps, "texture_size": size, "quality": "fast",
                         "device": "cpu"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--texture-size", type=int, default=128)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray runtime")
    args = parser.parse_args()

    import ray
    import torch

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="csd-bench-batch-"))
    rows = []
    t_init = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t_init = time.perf_counter() - t_init
    for label, make in (("in-process, 1 worker", lambda: InProcess(torch_threads=1)),
                        ("Ray, 1 actor", lambda: RayActors("local", 1, gpus_per_job=0)),
                        ("Ray, 2 actors", lambda: RayActors("local", 2, gpus_per_job=0))):
        t_up = time.perf_counter()
        executor = make()
        for slot in range(executor.slots):
            executor.worker_pid(slot)
        t_up = time.perf_counter() - t_up
        warm_jobs, _ = read_jobs(write_jobs(folder, executor.slots, 2, 64, first_seed=1000 + len(rows) * 10))
        t_warm = time.perf_counter()
        run_batch(warm_jobs, folder / f"warm{len(rows)}", executor, quiet=True)
        t_warm = time.perf_counter() - t_warm
        jobs, _ = read_jobs(write_jobs(folder, args.jobs, args.steps, args.texture_size, first_seed=0))
        rows.append((label, executor.slots, t_up, t_warm, *measure(executor, jobs, folder / f"run{len(rows)}")))
        executor.close()
    ray.shutdown()

    print(f"# batch: {args.jobs} texture jobs (Spot, toy prior, {args.steps} steps, texture {args.texture_size}², "
          f"quality fast), CPU, 1 torch thread per worker")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"ray {ray.__version__}, load average {os.getloadavg()[0]:.2f}; ray.init {t_init:.1f} s")
    print("| run | workers | start-up s | warm-up s | wall s | jobs/hour | job s (in worker) | overhead/job ms "
          "| result kB/job |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, n, up, warm, wall, per_hour, job_s, overhead, kb in rows:
        print(f"| {label} | {n} | {up:.1f} | {warm:.1f} | {wall:.1f} | {per_hour:.0f} | {job_s:.2f} | "
              f"{overhead * 1000:.0f} | {kb:.0f} |")
    base = rows[0]
    ray1, ray2 = rows[1], rows[2]
    print(f"# 2 vs 1 Ray actors: {ray2[5] / ray1[5]:.2f}x jobs/hour; Ray adds {(ray1[7] - base[7]) * 1000:.0f} ms "
          f"per job over the in-process run (scheduling + result transfer)")


def measure(executor, jobs, out: Path) -> tuple[float, float, float, float, float]:
    """(wall s, jobs/hour, mean job s in the worker, mean overhead s per job, mean result kB per job)."""
    dispatched: dict[str, float] = {}
    overhead: list[float] = []

    def on_event(event, job, info):
        if event == "started":
            dispatched[job.job_id] = time.perf_counter()
        elif event == "done":  # its files are written by now
            overhead.append(time.perf_counter() - dispatched[job.job_id] - info["seconds"])

    t0 = time.perf_counter()
    summary = run_batch(jobs, out, executor, quiet=True, on_event=on_event)
    wall = time.perf_counter() - t0
    assert summary.counts()["done"] == len(jobs), summary.table()
    kb = statistics.mean(sum(f.stat().st_size for f in (out / e.job_id).iterdir()) for e in summary.jobs) / 1024
    return (wall, 3600 * len(jobs) / wall, statistics.mean(e.seconds for e in summary.jobs),
            statistics.mean(overhead), kb)


if __name__ == "__main__":
    main()
