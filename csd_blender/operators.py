"""All operators of the add-on: engine management and jobs (registered together by __init__.register)."""
from __future__ import annotations

import bpy

from . import operators_edit, operators_engine, operators_generate, operators_jobs, operators_results
from .engine_session import SESSION

MODULES = (operators_engine, operators_jobs, operators_generate, operators_edit, operators_results)


def register() -> None:
    SESSION.stop_in_background = not bpy.app.background
    for module in MODULES:
        module.register()


def unregister() -> None:
    # Disabling the add-on must not leave an engine process behind.
    SESSION.stop(wait=True)
    for module in reversed(MODULES):
        module.unregister()
