"""Test-wide settings: one torch thread per process (tests start engine subprocesses beside the test process,
and two OpenMP threads per process on a two-core machine make every process spin-wait: 5-10× slower), a
private embedding cache, and tests/fixtures/ on sys.path for the shared helpers."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("CSD_CACHE_DIR", tempfile.mkdtemp(prefix="csd-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))  # shared helpers: import engine_fakes, paths
# The add-on's protocol package exactly as released at 1.0 (main 5a4c031), kept as a zipped artefact an old client
# would run, for the version-skew tests: `import protocol_v1_0` (zipimport).
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "protocol_v1_0.zip"))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the protocol tests run without torch
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test of a run of Ray test modules (`USES_RAY = True`; their fixtures are torn down by then),
    shut the local Ray runtime down so its processes do not idle through the rest of the suite."""
    yield
    if getattr(item.module, "USES_RAY", False) and not (nextitem is not None
                                                          and getattr(nextitem.module, "USES_RAY", False)):
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
