"""What one GPU check run measures and at which size (`CheckPlan`: full size on CUDA, tiny on the CPU for the dry
run), and the wall-time budget its sections ask before they start."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

CUDA = torch.device("cuda")


@dataclass(frozen=True)
class CheckPlan:
    """What one run measures and at which size; the defaults are the full-size CUDA plan.

    Attributes:
        dry_run: tiny configs on the CPU (script check) instead of full size on CUDA.
        device: where the models run.
        dtype: weight dtype (fp16 on CUDA, fp32 in the dry run).
        render: texture/edit render size in pixels (the SD UNet's own size).
        texture: bake size of the texture and edit jobs.
        steps: timed steps per row.
        warmup: steps of the untimed job before each row (kernels, allocator, compilation).
        profile_steps: steps of the device-synchronised job that gives the stage breakdown.
        repeats: replays of the batched UNet+ControlNet forward timed alone.
        fit_steps: the edit job's reconstruction steps at most.
        batches: texture batch sizes.
        compile_batches: texture batch sizes timed with `torch.compile` too (each is a compilation).
        compile_backend: torch.compile backend ("inductor" on CUDA, "eager" in the dry run).
        compile_cost_s: budget a compiled row needs (compilation included).
    """

    dry_run: bool = False
    device: torch.device = CUDA
    dtype: torch.dtype = torch.float16
    render: int = 512
    texture: int = 1024
    steps: int = 15
    warmup: int = 3
    profile_steps: int = 6
    repeats: int = 10
    fit_steps: int = 150
    batches: tuple[int, ...] = (1, 4)
    compile_batches: tuple[int, ...] = (1, 4)
    compile_backend: str = "inductor"
    compile_cost_s: float = 150.0

    @classmethod
    def make(cls, dry_run: bool) -> CheckPlan:
        """The full-size CUDA plan, or the tiny CPU one.

        Args:
            dry_run: the tiny CPU plan.
        """
        if dry_run:
            return cls(
                True, torch.device("cpu"), torch.float32, render=64, texture=64, steps=1, warmup=1,
                profile_steps=1, repeats=1, fit_steps=2, compile_batches=(1,), compile_backend="eager",
                compile_cost_s=5.0,
            )
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device (use --dry-run on a CPU)")
        return cls()


class Budget:
    """Wall-time budget of the whole check; sections ask before they start.

    Args:
        seconds: the budget.
    """

    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = float(seconds)

    def used(self) -> float:
        """Seconds since the check started."""
        return time.perf_counter() - self.start

    def allows(self, need: float) -> bool:
        """Whether `need` more seconds fit.

        Args:
            need: the section's expected cost in seconds.
        """
        return self.used() + need <= self.seconds
