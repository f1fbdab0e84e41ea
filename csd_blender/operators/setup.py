"""Set Up Engine with its Cancel button, and Check Engine Python (both drawn in the add-on preferences).

Set Up Engine runs link.setup on a worker thread and polls it from a timer.

pip runs in a subprocess read by a worker thread that touches no bpy; a persistent `bpy.app.timers` function
copies its status into the preferences and redraws them, so Blender never blocks. Background Blender (scripts,
tests) runs the setup inside the operator call.
"""
from __future__ import annotations

import os

import bpy

from ..link import interpreter_check
from ..link import setup as engine_setup
from ..link.session import SESSION
from ..props.prefs import get_preferences
from ..scene.paths import user_dir
from .engine import redraw_ui

POLL_S = 0.25
ENV_FOLDER = "engine_env"

_setup: engine_setup.EngineSetup | None = None


def running_setup() -> engine_setup.EngineSetup | None:
    """The setup under way, if any (the preferences draw its progress)."""
    return _setup


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


def _adopt(status: engine_setup.SetupStatus) -> None:
    """Put a finished setup's outcome into the preferences (main thread)."""
    try:
        prefs = get_preferences()
    except RuntimeError:                 # the add-on is being disabled
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
    redraw_ui()
    if status.state == engine_setup.RUNNING:
        return POLL_S
    _adopt(status)
    _setup = None
    redraw_ui()
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
        try:
            prefs = get_preferences()
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
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
            if status.state == engine_setup.DONE:  # where it went and what the check found
                self.report(level, " ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else lines[0])
            else:  # the failed step, the cause (pip's error line), the log's path and any hint: all of it
                self.report(level, " ".join(lines))
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


# ---------------------------------------------------------------------------------------------- Check
_check: interpreter_check.PythonCheck | None = None


def running_check() -> interpreter_check.PythonCheck | None:
    """The interpreter check under way, if any (the preferences show "Checking...")."""
    return _check


def _poll_check():
    global _check
    if _check is None:
        return None
    result = _check.poll_with_timeout(interpreter_check.CHECK_TIMEOUT_S)
    if result is None:
        return 0.2
    try:
        get_preferences().check_report = "\n".join(result.lines())
    except RuntimeError:                 # the add-on is being disabled
        pass
    _check = None
    redraw_ui()
    return None


class CSD_OT_check_python(bpy.types.Operator):
    """Run the interpreter and report its Python, torch, device and engine versions (or the exact error)"""

    bl_idname = "csd.check_python"
    bl_label = "Check Engine Python"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        global _check
        prefs = get_preferences()
        python = bpy.path.abspath(prefs.python_path)
        if bpy.app.background:
            result = interpreter_check.check_python(python, expected_engine=interpreter_check.addon_version())
            prefs.check_report = "\n".join(result.lines())
            self.report({"INFO"} if result.ok else {"ERROR"}, result.lines()[0])
            return {"FINISHED"} if result.ok else {"CANCELLED"}
        if _check is not None:
            _check.kill()
        _check = interpreter_check.PythonCheck(python, interpreter_check.addon_version())
        prefs.check_report = ""
        if not bpy.app.timers.is_registered(_poll_check):
            bpy.app.timers.register(_poll_check, first_interval=0.1)
        return {"FINISHED"}


CLASSES = (CSD_OT_setup_engine, CSD_OT_setup_engine_cancel, CSD_OT_check_python)


def unregister() -> None:
    """Before CLASSES are unregistered."""
    global _setup, _check
    if bpy.app.timers.is_registered(_poll_check):
        bpy.app.timers.unregister(_poll_check)
    if _check is not None:
        _check.kill()
        _check = None
    if bpy.app.timers.is_registered(_poll_setup):
        bpy.app.timers.unregister(_poll_setup)
    if _setup is not None:               # disabling the add-on must not leave pip running
        _setup.cancel()
        _setup.wait(10.0)
        _setup = None
