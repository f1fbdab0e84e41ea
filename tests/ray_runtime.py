"""The Ray tests' local runtime (two CPUs, no dashboard): started by the first Ray test module, kept for the next
one, shut down by conftest.py once a test of a module without `USES_RAY = True` follows (start-up costs ~5 s)."""

from __future__ import annotations

import pytest


def local_ray():
    """The `ray` module with a local two-CPU runtime running (the test is skipped when Ray is not installed)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray
