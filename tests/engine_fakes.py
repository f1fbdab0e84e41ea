"""A fake task for server tests that must not depend on a model: sleeps per step, previews, fails on request.

Run an engine with it registered: `python tests/engine_fakes.py serve ...` (same arguments as
`python -m engine serve`).
"""

from __future__ import annotations

import struct
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np

from csd_blender.protocol.errors import ErrorCode, ProtocolError


def tiny_png(value: int, size: int = 8) -> bytes:
    """A valid grey `size`x`size` PNG (stdlib only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([value % 256]) * size for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class SleepyParams:
    """steps x step_s seconds; `fail` in "", "engine_error", "oom", "crash", "nan"; result is seed-dependent."""

    steps: int = 3
    step_s: float = 0.05
    seed: int = 0
    fail: str = ""
    size: int = 16
    batch_size: int = 1  # only named in the out-of-memory advice
    preview_every: int = 2  # 0: never send a preview

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "params: must be an object", field="params")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"{sorted(unknown)[0]}: unknown field", field=sorted(unknown)[0]
            )
        return cls(**data)

    def validate(self):
        if not 1 <= self.steps <= 10_000:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"steps: must be in [1, 10000], got {self.steps}", field="steps"
            )
        return self


def run_sleepy(job, prior=None, progress=None, should_stop=None):
    from engine.errors import CancelledError, EngineError
    from engine.tasks.base import ProgressEvent

    start = time.monotonic()
    for step in range(1, job.steps + 1):
        if should_stop is not None and should_stop():
            raise CancelledError()
        time.sleep(job.step_s)
        if job.fail == "engine_error" and step == 1:
            raise EngineError(ErrorCode.MODEL_MISSING, "model: fake model is missing", field="model")
        if job.fail == "oom" and step == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if job.fail == "crash" and step == 1:
            raise ZeroDivisionError("fake crash")
        if progress is not None:
            progress(
                ProgressEvent(
                    "optimising",
                    step,
                    job.steps,
                    loss=1.0 / step,
                    elapsed_s=time.monotonic() - start,
                    preview_png=tiny_png(step)
                    if job.preview_every and step % job.preview_every == 0
                    else None,
                )
            )
    rng = np.random.default_rng(job.seed)
    result = rng.random((job.size, job.size, 3), dtype=np.float32)
    if job.fail == "nan":  # a diverged run: its meta (the checksum) is NaN
        result[0, 0, 0] = np.nan
    return result


def pack_sleepy(result):
    return {"checksum": float(result.sum())}, {"texture": result}


def register() -> None:
    from engine.registry import TASKS
    from engine.tasks.base import TaskSpec

    if "sleepy" not in TASKS:
        TASKS.register("sleepy")(
            TaskSpec(
                "sleepy",
                SleepyParams,
                lambda params, arrays: params,
                run_sleepy,
                pack_sleepy,
                prior_key=lambda job: None,
            )
        )


def unregister() -> None:
    from engine.registry import TASKS

    TASKS.unregister("sleepy")


if __name__ == "__main__":
    register()
    from engine.cli import main

    sys.exit(main(sys.argv[1:]))
