"""Scalar schedules in the official threestudio `C()` convention: a number or `[start_step, start, end, end_step]`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from ..errors import RequestError

ScheduleSpec = Union[float, int, Sequence[float]]


@dataclass(frozen=True)
class Schedule:
    """A scalar that changes linearly with the optimisation step and is clamped outside its breakpoints.

    Follows `threestudio.utils.misc.C` as used by the official CSD configs (csd_reference.md §1a):
    `value(step) = start + (end - start) * clamp((step - start_step) / (end_step - start_step), 0, 1)`.
    `[5000, 0.98, 0.5, 5001]` is therefore 0.98 up to step 5000 and 0.5 from step 5001 (a step change).

    Args:
        start_step: step at which the ramp starts (value = start_value at and before it).
        start_value: value at and before `start_step`.
        end_value: value at and after `end_step`.
        end_step: step at which the ramp ends; must be > start_step unless the schedule is constant.
    """

    start_step: int
    start_value: float
    end_value: float
    end_step: int

    @property
    def constant(self) -> bool:
        """True when the value never changes."""
        return self.start_value == self.end_value

    @classmethod
    def parse(cls, spec: ScheduleSpec | Schedule, field: str = "schedule") -> Schedule:
        """Build a schedule from a number, a 3-list `[start, end, end_step]` or a 4-list.

        Args:
            spec: a plain number (constant), `[start_value, end_value, end_step]` (start_step 0) or
                `[start_step, start_value, end_value, end_step]`.
            field: name used in error messages.
        """
        if isinstance(spec, Schedule):
            return spec
        if isinstance(spec, bool):
            raise RequestError(
                field, f"must be a number or a [start_step, start, end, end_step] list, got {spec!r}"
            )
        if isinstance(spec, (int, float)):
            value = float(spec)
            if not math.isfinite(value):
                raise RequestError(field, f"must be finite, got {spec!r}")
            return cls(0, value, value, 1)
        try:
            items = list(spec)
        except TypeError:
            raise RequestError(
                field, f"must be a number or a [start_step, start, end, end_step] list, got {spec!r}"
            )
        if len(items) == 3:
            items = [0, *items]
        if len(items) != 4:
            raise RequestError(field, f"a schedule list needs 3 or 4 entries, got {len(items)}")
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items
        ):
            raise RequestError(field, f"schedule entries must be finite numbers, got {items!r}")
        start_step, start_value, end_value, end_step = items
        if start_step != int(start_step) or end_step != int(end_step) or start_step < 0:
            raise RequestError(
                field, f"schedule steps must be integers >= 0, got {start_step!r} and {end_step!r}"
            )
        if end_step <= start_step:
            raise RequestError(field, f"end_step must be > start_step, got {start_step} and {end_step}")
        return cls(int(start_step), float(start_value), float(end_value), int(end_step))

    def __call__(self, step: int) -> float:
        """The value at optimisation step `step` (0-based)."""
        if self.constant:
            return self.start_value
        frac = (step - self.start_step) / (self.end_step - self.start_step)
        frac = max(min(1.0, frac), 0.0)
        return self.start_value + (self.end_value - self.start_value) * frac

    def scaled(self, factor: float) -> Schedule:
        """The same schedule with its step breakpoints multiplied by `factor` (end_step stays > start_step).

        Args:
            factor: new run length / reference run length, e.g. 500 / 10000.
        """
        if factor <= 0:
            raise RequestError("total_steps", f"schedule scale factor must be > 0, got {factor}")
        if self.constant:
            return self
        start = int(round(self.start_step * factor))
        end = max(int(round(self.end_step * factor)), start + 1)
        return Schedule(start, self.start_value, self.end_value, end)

    def to_spec(self) -> float | list:
        """The plain config form: a number when constant, else the 4-list."""
        if self.constant:
            return self.start_value
        return [self.start_step, self.start_value, self.end_value, self.end_step]

    def bounds(self) -> tuple[float, float]:
        """(min, max) over all steps."""
        return min(self.start_value, self.end_value), max(self.start_value, self.end_value)
