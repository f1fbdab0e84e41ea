"""Per-part step timers: host clocks, optionally synchronised with the device (exact CUDA part times)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def device_clock(device: torch.device | str, sync: bool) -> Callable[[], float]:
    """A `perf_counter` that first waits for queued device work when `sync` is set and the device is CUDA.

    Args:
        device: where the task runs.
        sync: synchronise before each reading (profiling); otherwise plain host time (GPU work may be
            attributed to the part that next waits for it).
    """
    if sync and torch.device(device).type == "cuda":

        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return clock
    return time.perf_counter
