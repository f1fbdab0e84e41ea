"""All operators of the add-on: engine management and jobs (registered together by __init__.register)."""
from __future__ import annotations

from . import operators_engine, operators_jobs
from .engine_session import SESSION

MODULES = (operators_engine, operators_jobs)


def register() -> None:
    for module in MODULES:
        module.register()


def unregister() -> None:
    # Disabling the add-on must not leave an engine process behind.
    SESSION.stop()
    for module in reversed(MODULES):
        module.unregister()
