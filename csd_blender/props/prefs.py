"""The add-on preferences as the operators and panels read them (the class itself, CSDPreferences, is declared and
drawn in ../preferences.py, the top layer; this module only finds the registered instance by package name)."""
from __future__ import annotations

import os

from ..link.session import EngineSettings
from ..scene.paths import PACKAGE, user_dir


def get_preferences():
    """This add-on's preferences (CSDPreferences); RuntimeError when the add-on is not enabled."""
    import bpy

    addon = bpy.context.preferences.addons.get(PACKAGE)
    if addon is None:
        raise RuntimeError(f"the add-on {PACKAGE!r} is not enabled")
    return addon.preferences


def default_model() -> str:
    """The model for jobs whose Model field is empty ("toy" while the add-on is being disabled)."""
    try:
        return get_preferences().default_model
    except RuntimeError:
        return "toy"


def start_block_reason(prefs) -> str:
    """Why Start Engine cannot run with these preferences ("" when it can)."""
    import bpy

    if prefs.engine_mode != "LOCAL":
        return "" if prefs.endpoint.strip() else "Set the remote engine's Endpoint in the add-on preferences"
    python = bpy.path.abspath(prefs.python_path).strip()
    if not python:
        return "No engine Python yet: use Set Up Engine in the add-on preferences"
    if not os.path.isfile(python):
        return f"The engine Python {python} does not exist: run Set Up Engine again"
    return ""


def engine_settings() -> EngineSettings:
    """The preferences as EngineSettings for EngineSession.start()."""
    import bpy

    prefs = get_preferences()
    return EngineSettings(
        mode=prefs.engine_mode, python=bpy.path.abspath(prefs.python_path), device=prefs.device,
        endpoint=prefs.endpoint, token=prefs.token, key_folder=bpy.path.abspath(prefs.key_folder),
        cache_folder=bpy.path.abspath(prefs.cache_folder),
        log_file=os.path.join(user_dir("logs"), "engine.log"),
        online_access=bool(getattr(bpy.app, "online_access", True)))
