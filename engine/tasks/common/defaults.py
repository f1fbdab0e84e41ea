"""Resolving a job's `None` settings from its quality preset and prior, so job.json records what actually ran."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

P = TypeVar("P")


def fill_defaults(params: P, **defaults: Any) -> P:
    """A copy of the params dataclass with each field that is None set to its default; set fields are kept.

    Args:
        params: a protocol params dataclass.
        **defaults: field name -> the value to use where the field is None.
    """
    return dataclasses.replace(params, **{k: v for k, v in defaults.items() if getattr(params, k) is None})
