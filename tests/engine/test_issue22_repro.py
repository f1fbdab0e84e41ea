"""Issue 22, finding 12: what decides bit-identical reruns is recorded in job.json (torch's CPU thread count and
the CPU capability its kernels were picked for), and `./dev demo` fixes the thread count the committed demo
turntable was made with."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.tasks.common.outputs import engine_versions

ROOT = Path(__file__).resolve().parents[2]


def test_job_json_records_the_thread_count_and_the_cpu_capability():
    versions = engine_versions()
    assert versions["torch_threads"] == torch.get_num_threads()
    assert versions["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and versions["machine"]


def test_dev_demo_runs_with_a_fixed_thread_count():
    line = next(line for line in (ROOT / "dev").read_text().splitlines() if line.strip().startswith("demo)"))
    assert "OMP_NUM_THREADS=2" in line, line


def test_the_readme_states_the_conditions_of_identical_reruns():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "same number of\ntorch CPU threads" in text or "same number of torch CPU threads" in text
    assert "cpu_capability" in text
