"""Issue 22, finding 9: a cancel during "baking" lands within a second (between bake chunks and padding rings),
instead of the job running its 4096² bake to the end and returning a full result."""

from __future__ import annotations

import time

import pytest
from server_jobs import ARRAYS

from csd_blender.protocol.params import TextureParams
from engine.errors import CancelledError
from engine.tasks.base import ProgressEvent
from engine.tasks.texture import make_texture_job, run_texture

ASK_AFTER_S = 0.5  # into the bake: past the unwrap and the rasterisation's start


@pytest.mark.parametrize("size", [4096])
def test_a_cancel_while_baking_lands_within_a_second(size):
    params = TextureParams(prompt="a red sphere", steps=1, texture_size=size, render_size=32, batch_size=1,
                           progress_every=1, preview_size=32, device="cpu").validate()
    job = make_texture_job(params, dict(ARRAYS))
    baking: list[float] = []

    def progress(event: ProgressEvent) -> None:
        if event.stage == "baking" and not baking:
            baking.append(time.monotonic())

    def should_stop() -> bool:
        return bool(baking) and time.monotonic() - baking[0] > ASK_AFTER_S

    with pytest.raises(CancelledError):
        run_texture(job, progress=progress, should_stop=should_stop)
    latency = time.monotonic() - baking[0] - ASK_AFTER_S
    assert latency < 1.0, f"the cancel took {latency:.1f} s to land"
