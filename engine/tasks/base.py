"""What every task provides to the server and the command line: parameters, job building, run, result packing."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class ProgressEvent:
    """A progress report from a running task.

    Args:
        stage: "loading" (model), "optimising", "baking" or "done".
        step: optimisation steps finished so far.
        total: total optimisation steps.
        loss: guidance loss of the last step before gradient post-processing (NaN before the first).
        elapsed_s: seconds since the job started.
        eta_s: estimated seconds left (NaN when unknown).
        preview_png: a small PNG of a fixed view, or None.
    """

    stage: str
    step: int
    total: int
    loss: float = float("nan")
    elapsed_s: float = 0.0
    eta_s: float = float("nan")
    preview_png: bytes | None = None

    @classmethod
    def during(cls, stage: str, done: int, total: int, loss: float, t_start: float, t_loop: float,
               preview: Callable[[], bytes | None]) -> ProgressEvent:
        """The event of an optimisation loop after `done` of `total` steps, ETA from the loop's mean step time.

        Args:
            stage: stage name.
            done, total: steps finished and planned (done ≥ 1).
            loss: the last step's guidance loss.
            t_start, t_loop: time.perf_counter() at the job's and at the loop's start.
            preview: renders the preview PNG (called once).
        """
        now = time.perf_counter()
        return cls(stage, done, total, loss, now - t_start, (now - t_loop) / done * (total - done), preview())


ProgressFn = Callable[[ProgressEvent], None]
StopFn = Callable[[], bool]


class TaskRun(Protocol):
    def __call__(self, job: Any, prior: Any = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None) -> Any: ...


@dataclass
class TaskSpec:
    """A registered task (engine.registry.TASKS): how to build its job and pack its result for the wire.

    Args:
        name: task name, equal to the protocol's task name.
        params_cls: the protocol dataclass of its parameters (csd_blender.protocol.params).
        make_job: (params, arrays: dict[str, np.ndarray]) -> job; validates arrays, raises EngineError.
        run: (job, prior, progress, should_stop) -> result.
        pack_result: result -> (meta: JSON-able dict, arrays: dict[str, np.ndarray]).
        prior_key: job -> (model, controlnets) the server uses to reuse a loaded prior.
    """

    name: str
    params_cls: type
    make_job: Callable[[Any, dict[str, np.ndarray]], Any]
    run: TaskRun
    pack_result: Callable[[Any], tuple[dict, dict[str, np.ndarray]]]
    prior_key: Callable[[Any], tuple] = field(default=lambda job: ("toy", ()))
