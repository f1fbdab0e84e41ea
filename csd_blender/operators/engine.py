"""Engine operators: start, stop, release memory, open the log; the idle heartbeat timer and the UI redraw.

Registering this module arms the shared session (SESSION); unregistering it stops the engine.
"""
from __future__ import annotations

import os

import bpy

from ..link import session as engine_session
from ..link.session import SESSION, SessionError
from ..props import prefs

IDLE_POLL_S = 1.0
START_POLL_S = 0.2


def redraw_ui() -> None:
    """Redraw the 3D view sidebars (where the CSD panels live) and the status bar."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR", "PREFERENCES"}:
                area.tag_redraw()


def _idle_heartbeat():
    """bpy.app.timers callback: notice an engine that died while no job runs."""
    if SESSION.state != engine_session.RUNNING:
        return None
    try:
        if SESSION.poll_idle():
            redraw_ui()
    except Exception as exc:            # never let a timer raise: it would be dropped silently
        SESSION.mark_dead(f"lost the engine: {exc}")
        redraw_ui()
        return None
    return IDLE_POLL_S


def _watch_start():
    """bpy.app.timers callback (persistent): finish a background start even if its modal operator is gone
    (loading a file removes modal handlers)."""
    state = SESSION.poll_start()
    redraw_ui()
    if state is None:
        return START_POLL_S
    if state == engine_session.RUNNING:
        start_idle_heartbeat()
    return None


def start_idle_heartbeat() -> None:
    if not bpy.app.background and not bpy.app.timers.is_registered(_idle_heartbeat):
        bpy.app.timers.register(_idle_heartbeat, first_interval=IDLE_POLL_S)


def stop_idle_heartbeat() -> None:
    if bpy.app.timers.is_registered(_idle_heartbeat):
        bpy.app.timers.unregister(_idle_heartbeat)


def start_block_reason() -> str:
    """Why Start Engine is disabled by the preferences ("" when it can start): shown in the Engine panel."""
    try:
        return prefs.start_block_reason(prefs.get_preferences())
    except RuntimeError as exc:          # the add-on is not enabled
        return str(exc)


class CSD_OT_engine_start(bpy.types.Operator):
    """Start the local engine (or connect to the remote one) as set in the add-on preferences"""

    bl_idname = "csd.engine_start"
    bl_label = "Start Engine"
    bl_options = {"REGISTER"}

    _timer = None

    @classmethod
    def poll(cls, context):
        if SESSION.connected:
            cls.poll_message_set("The engine is already running")
            return False
        if SESSION.starting:
            cls.poll_message_set("The engine is starting")
            return False
        if SESSION.job is not None:
            cls.poll_message_set("A job is still finishing")
            return False
        reason = start_block_reason()
        if reason:
            cls.poll_message_set(reason)
            return False
        return True

    def execute(self, context):
        reason = start_block_reason()
        if reason:
            self.report({"ERROR"}, reason)
            return {"CANCELLED"}
        try:
            settings = prefs.engine_settings()
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background or context.window is None:  # scripts: start synchronously
            try:
                SESSION.start(settings)
            except SessionError:
                pass
            return self._finish(SESSION.state)
        # The launch and handshake take seconds (a minute for a cold CUDA import): a worker thread does
        # them while Blender stays responsive; this modal operator polls it from a timer.
        SESSION.begin_start(settings)
        if not bpy.app.timers.is_registered(_watch_start):
            bpy.app.timers.register(_watch_start, first_interval=START_POLL_S, persistent=True)
        self._timer = context.window_manager.event_timer_add(START_POLL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        redraw_ui()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = SESSION.poll_start()      # _watch_start may have adopted the engine first: same state
        if state is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        return self._finish(state)

    def _finish(self, state: str) -> set:
        redraw_ui()
        if state == engine_session.RUNNING:
            start_idle_heartbeat()
            self.report({"INFO"}, " | ".join(SESSION.describe()[:2]))
            return {"FINISHED"}
        if state == engine_session.FAILED:
            self.report({"ERROR"}, f"Engine did not start: {SESSION.last_error}")
        else:
            self.report({"INFO"}, "Engine start cancelled")
        return {"CANCELLED"}


class CSD_OT_engine_stop(bpy.types.Operator):
    """Stop the local engine (or disconnect from the remote one); a running job is cancelled"""

    bl_idname = "csd.engine_stop"
    bl_label = "Stop Engine"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if SESSION.state == engine_session.STOPPED and SESSION.process is None and not SESSION.starting:
            cls.poll_message_set("The engine is not running")
            return False
        return True

    def execute(self, context):
        if SESSION.job is not None:
            SESSION.job.cancel_requested = True
        stop_idle_heartbeat()
        SESSION.stop()
        redraw_ui()
        return {"FINISHED"}


class CSD_OT_engine_release(bpy.types.Operator):
    """Free the engine's loaded models and device memory (they load again with the next job)"""

    bl_idname = "csd.engine_release"
    bl_label = "Release Memory"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not SESSION.connected:
            cls.poll_message_set("The engine is not running")
            return False
        if SESSION.job is not None:
            cls.poll_message_set("Wait for the running job to finish, or cancel it")
            return False
        return True

    def execute(self, context):
        try:
            summary = SESSION.release()
        except Exception as exc:
            self.report({"ERROR"}, f"Release failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, summary)
        redraw_ui()
        return {"FINISHED"}


class CSD_OT_open_log(bpy.types.Operator):
    """Open the local engine's log file"""

    bl_idname = "csd.open_log"
    bl_label = "Open Engine Log"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not SESSION.log_file or not os.path.exists(SESSION.log_file):
            cls.poll_message_set("No engine log yet (the local engine writes one when it starts)")
            return False
        return True

    def execute(self, context):
        bpy.ops.wm.path_open(filepath=SESSION.log_file)
        return {"FINISHED"}


CLASSES = (CSD_OT_engine_start, CSD_OT_engine_stop, CSD_OT_engine_release, CSD_OT_open_log)


def register() -> None:
    """After CLASSES are registered (csd_blender.register)."""
    SESSION.stop_in_background = not bpy.app.background


def unregister() -> None:
    """Before CLASSES are unregistered."""
    SESSION.stop(wait=True)             # disabling the add-on must not leave an engine process behind
    stop_idle_heartbeat()
    if bpy.app.timers.is_registered(_watch_start):
        bpy.app.timers.unregister(_watch_start)
