"""Set Up Engine and its Cancel button (preferences): run engine_setup on a worker thread, poll it from a timer.

pip runs in a subprocess read by a worker thread that touches no bpy; a persistent `bpy.app.timers` function
copies its status into the preferences and redraws them, so Blender never blocks. Background Blender (scripts,
tests) runs the setup inside the operator call.
"""
from __future__ import annotations

import os

import bpy

from . import engine_setup
from .engine_session import SESSION
from .paths import PACKAGE, user_dir

POLL_S = 0.25
ENV_FOLDER = "engine_env"

_setup: engine_setup.EngineSetup | None = None


def running_setup() -> engine_setup.EngineSetup | None:
    """The setup under way, if any (the preferences draw its progress)."""
    return _setup


def _prefs():
    addon = bpy.context.preferences.addons.get(PACKAGE)
    return None if addon is None else addon.preferences


def default_env_dir() -> str:
    """Where Set Up Engine puts the environment unless the preferences say otherwise."""
    return os.path.join(user_dir(), ENV_FOLDER)


def setup_config(prefs) -> engine_setup.SetupConfig:
    """The preferences as a SetupConfig (paths made absolute, compute resolved).

    Raises:
        engine_setup.SetupError: the add-on carries no engine wheel (not installed from a build.py zip).
    """
    compute = prefs.setup_compute.lower()
    if compute == "auto":
        compute = engine_setup.detect_compute()
    env_dir = bpy.path.abspath(prefs.setup_folder).strip() or default_env_dir()
    return engine_setup.SetupConfig(
        env_dir=os.path.normpath(env_dir), compute=compute, engine_wheel=engine_setup.bundled_engine_wheel(),
        wheel_folder=bpy.path.abspath(prefs.setup_wheel_folder).strip(),
        log_file=os.path.join(user_dir("logs"), "engine_setup.log"),
        online_access=bool(getattr(bpy.app, "online_access", True)))


def _redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _adopt(status: engine_setup.SetupStatus) -> None:
    """Put a finished setup's outcome into the preferences (main thread)."""
    prefs = _prefs()
    if prefs is None:
        return
    prefs.setup_report = "\n".join(status.lines())
    if status.state == engine_setup.DONE:
        prefs.python_path = status.python
        prefs.check_report = "\n".join(status.check)


def _poll_setup():
    """bpy.app.timers callback: mirror the running setup into the preferences until it ends."""
    global _setup
    if _setup is None:
        return None
    status = _setup.status()
    _redraw()
    if status.state == engine_setup.RUNNING:
        return POLL_S
    _adopt(status)
    _setup = None
    _redraw()
    return None


class CSD_OT_setup_engine(bpy.types.Operator):
    """Create a Python environment in the extension's folder with PyTorch and the CSD engine bundled with this
    add-on, then use it as the engine's Python"""

    bl_idname = "csd.setup_engine"
    bl_label = "Set Up Engine"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        if _setup is not None:
            cls.poll_message_set("Set Up Engine is already running")
            return False
        if SESSION.connected or SESSION.starting:
            cls.poll_message_set("Stop the engine first (its Python may be the one being replaced)")
            return False
        return True

    def execute(self, context):
        global _setup
        prefs = _prefs()
        if prefs is None:
            self.report({"ERROR"}, f"the add-on {PACKAGE!r} is not enabled")
            return {"CANCELLED"}
        try:
            config = setup_config(prefs)
            problems = config.problems()
        except engine_setup.SetupError as exc:
            problems = [str(exc)]
        if problems:
            prefs.setup_report = "\n".join(["Set Up Engine cannot start:", *problems])
            self.report({"ERROR"}, problems[0])
            return {"CANCELLED"}
        setup = engine_setup.EngineSetup(config)
        prefs.setup_report = ""
        if bpy.app.background:
            status = setup.run()
            _adopt(status)
            level = {"INFO"} if status.state == engine_setup.DONE else {"ERROR"}
            lines = status.lines()
            self.report(level, " ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else lines[0])
            return {"FINISHED"} if status.state == engine_setup.DONE else {"CANCELLED"}
        _setup = setup
        setup.start()
        if not bpy.app.timers.is_registered(_poll_setup):
            bpy.app.timers.register(_poll_setup, first_interval=POLL_S, persistent=True)
        return {"FINISHED"}


class CSD_OT_setup_engine_cancel(bpy.types.Operator):
    """Stop Set Up Engine (pip is killed; run it again to start over)"""

    bl_idname = "csd.setup_engine_cancel"
    bl_label = "Cancel Set Up"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        if _setup is None:
            cls.poll_message_set("Set Up Engine is not running")
            return False
        return True

    def execute(self, context):
        _setup.cancel()
        return {"FINISHED"}


CLASSES = (CSD_OT_setup_engine, CSD_OT_setup_engine_cancel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    global _setup
    if bpy.app.timers.is_registered(_poll_setup):
        bpy.app.timers.unregister(_poll_setup)
    if _setup is not None:               # disabling the add-on must not leave pip running
        _setup.cancel()
        _setup.wait(10.0)
        _setup = None
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

