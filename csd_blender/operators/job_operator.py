"""The modal-job operator base: submit engine jobs one after another, poll, show progress, apply each result.

Every job operator of the add-on (texture, texture selected objects, text to mesh, edit) subclasses
`ModalJobOperator` together with `bpy.types.Operator` and writes two methods:

    class CSD_OT_my_job(ModalJobOperator, bpy.types.Operator):
        bl_idname = "csd.my_job"; bl_label = "My Job"; bl_options = {"REGISTER", "UNDO"}
        job_label = "My job"                                    # used in messages: "My job failed: ..."

        def prepare(self, context) -> list[JobRequest]:         # refuse by raising JobRefused / ValueError
            return [JobRequest("texture", params, arrays, target=obj.name, data=mesh_info)]

        def apply(self, context, request, result) -> str:       # on the main thread, bpy allowed
            ...; return "Texture applied to 'Cube'"             # raise ValueError: that job failed

The base does the rest: `execute()` runs `prepare()`, submits the first request, and then polls the engine
client on a window-manager timer (never blocking, no threads, no bpy off the main thread); in background mode
(no event loop: scripts, tests) it loops until the batch ends, so one operator call gives the finished result.
It keeps `SESSION.job` (progress bar, status line, ETA, live preview in the one "CSD Preview" image) current,
cancels on Esc or `csd.cancel` (CSD_OT_cancel here: the running job in the engine, and the requests not yet submitted), detects a
dead engine, and submits the next request only after the previous result was applied. Nothing is created in
the file by a failed or cancelled job. The operator returns FINISHED when at least one result was applied
(Blender then records one undo step for the whole batch), else CANCELLED.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bpy

from ..link.events import EngineDied, EngineRecovered, JobResult
from ..link.session import SESSION, JobState
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import Accepted, Cancelled, ErrorReply, Progress
from ..scene.preview import LivePreview
from .engine import redraw_ui, start_idle_heartbeat

log = logging.getLogger(__name__)

TIMER_S = 0.1
CANCEL_GRACE_S = 15.0      # wait this long for the engine to confirm a cancel before giving up on it


class JobRefused(Exception):
    """prepare() cannot submit: the message is shown to the user as is."""


@dataclass
class JobRequest:
    """One engine job of a batch.

    Args:
        task: protocol task name ("texture", ...).
        params: the task's validated parameter dataclass (protocol.params) or its dict.
        arrays: name -> numpy array sent as raw frames (shapes as in protocol.params.ARRAY_SPECS).
        target: name of the object the job is for ("" when it makes a new one); shown in the UI.
        data: anything apply() needs later (e.g. scene.mesh.MeshArrays); the base never looks at it.
    """

    task: str
    params: Any
    arrays: dict
    target: str = ""
    data: Any = None


@dataclass
class BatchOutcome:
    """What happened to the requests of one operator call (read by tests and by subclasses)."""

    applied: list = field(default_factory=list)       # targets whose result was applied
    failed: list = field(default_factory=list)        # (target, message)
    skipped: list = field(default_factory=list)       # targets never submitted (cancel or engine death)


def run_synchronously() -> bool:
    """Background Blender (no event loop) runs jobs to completion inside the operator call."""
    return bool(bpy.app.background)


class ModalJobOperator:
    """Mix-in for bpy.types.Operator: the job lifecycle shared by every CSD job operator (see module doc)."""

    job_label: ClassVar[str] = "Job"

    # -------------------------------------------------------------------------------------- subclass API
    @staticmethod
    def block_reason(context) -> str:
        """Why the job cannot run now ("" when it can): greys the button out with the reason (poll) and refuses in
        prepare (`refuse_if_blocked`). Subclasses set `block_reason = staticmethod(their_reason_function)`."""
        return ""

    @classmethod
    def poll(cls, context):
        reason = cls.block_reason(context)
        if reason:
            cls.poll_message_set(reason)
            return False
        return True

    def refuse_if_blocked(self, context) -> None:
        """Raise JobRefused with `block_reason` when the job cannot run (the state may change after poll)."""
        reason = self.block_reason(context)
        if reason:
            raise JobRefused(reason)

    def prepare(self, context) -> list[JobRequest]:
        """The jobs to run, in order (built on the main thread before anything is submitted).

        Raises:
            JobRefused, ValueError or ProtocolError: shown to the user; nothing is submitted.
        """
        raise NotImplementedError

    def apply(self, context, request: JobRequest, result) -> str:
        """Put one finished job's result into the file; return the message to report.

        Args:
            request: the request the result belongs to.
            result: client.JobResult (meta dict, arrays dict of numpy arrays).

        Raises:
            ValueError: the result cannot be used; whatever apply() created must be removed again.
        """
        raise NotImplementedError

    # -------------------------------------------------------------------------------------- submit
    def execute(self, context):
        try:
            requests = list(self.prepare(context))
            if not requests:
                raise JobRefused("Nothing to do")
            if SESSION.job is not None:
                raise JobRefused("A job is already running")
            if not SESSION.connected:
                raise JobRefused("Start the engine first (Engine panel)")
        except (JobRefused, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except ProtocolError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        self._requests = requests
        self._index = -1
        self._request: JobRequest | None = None
        self._outcome = BatchOutcome()
        self._messages: list[str] = []
        self._timer = None
        self._preview = LivePreview("batch")
        self._preview_used = False
        status = self._submit_next(context)
        if status is not None:
            return status

        if run_synchronously():
            while True:
                status = self._tick(context)
                if status is not None:
                    return status
                time.sleep(0.02)
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, f"CSD: {self.job_label.lower()} submitted")
        redraw_ui()
        return {"RUNNING_MODAL"}

    def _submit_next(self, context):
        """Submit the next request; return None while a job runs, or the final status when none is left."""
        while self._index + 1 < len(self._requests):
            self._index += 1
            request = self._requests[self._index]
            try:
                if SESSION.client is None or not SESSION.client.alive:
                    raise ProtocolError(ErrorCode.ENGINE_DIED, "the engine is not connected")
                job_id = SESSION.client.submit(request.task, request.params, request.arrays)
            except ProtocolError as exc:
                if self._index == 0 and len(self._requests) == 1:
                    self.report({"ERROR"}, exc.message)
                    return {"CANCELLED"}
                self._outcome.failed.append((request.target, exc.message))
                self._outcome.skipped.extend(r.target for r in self._requests[self._index + 1:])
                self._index = len(self._requests)
                break
            self._request = request
            SESSION.job = JobState(job_id, request.task, request.target,
                                   batch_index=self._index, batch_total=len(self._requests))
            if self._preview.name:                # the batch keeps one preview image
                SESSION.job.preview_name = self._preview.name
            log.info("submitted %s job %s for %r (%d of %d)", request.task, job_id, request.target,
                     self._index + 1, len(self._requests))
            return None
        return self._finish(context)

    # -------------------------------------------------------------------------------------- modal
    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            if SESSION.job is not None:
                SESSION.job.cancel_requested = True
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":                 # ours or another timer: polling is cheap and non-blocking
            status = self._tick(context)
            if status is not None:
                return status
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator (file load, window closed): stop the job, leave nothing behind."""
        job = SESSION.job
        if job is not None and SESSION.client is not None and SESSION.client.alive:
            try:
                SESSION.client.cancel(job.job_id)
            except ProtocolError:
                pass
        self._cleanup(context, keep_preview=False)

    # -------------------------------------------------------------------------------------- one tick
    def _tick(self, context):
        """Process what arrived; return None to keep going or the operator's final status."""
        job = SESSION.job
        try:
            if job is None:                       # the engine was stopped from the panel
                return self._stop_all(context, "WARNING", "stopped: the engine was stopped")
            client = SESSION.client
            if client is None:
                SESSION.mark_dead(SESSION.last_error or "the engine connection was closed")
                return self._stop_all(context, "ERROR", f"failed: {SESSION.last_error}")
            if not client.alive and job.silent_since is None:
                job.silent_since = time.monotonic()
            if not client.alive and time.monotonic() - job.silent_since > client.recover_s:
                client.abandon(job.job_id)  # cancelled should the engine come back after all
                SESSION.mark_dead(f"the engine did not answer for {time.monotonic() - job.silent_since:.0f} s")
                return self._stop_all(context, "ERROR", f"failed: {SESSION.last_error}; restart it from the "
                                                        "Engine panel")
            if job.cancel_requested and job.cancelling_since is None:
                client.cancel(job.job_id)
                job.cancelling_since = time.monotonic()
                self._status(context, "CSD: cancelling...")
            if job.cancelling_since is not None and time.monotonic() - job.cancelling_since > CANCEL_GRACE_S:
                return self._stop_all(context, "WARNING", "cancelled (the engine did not confirm in time)")
            for event in client.poll():
                status = self._handle(context, job, event)
                if status is not None:
                    return status
        except Exception as exc:
            log.exception("%s %s failed in Blender", self.job_label, job.job_id if job else "?")
            return self._stop_all(context, "ERROR", f"failed: {exc}")
        return None

    def _handle(self, context, job: JobState, event):
        if isinstance(event, EngineDied):  # perhaps false (paused, swapping): the client probes for a while
            job.silent_since = job.silent_since or time.monotonic()
            log.warning("%s; waiting up to %g s for it to answer again", event.reason, SESSION.client.recover_s)
            self._status(context, f"CSD {job.task}: {job.text()}")
            return None
        if isinstance(event, EngineRecovered):  # the client asked the engine which of our jobs it still has
            if job.job_id in event.resumed:
                job.silent_since = None
                log.info("the engine answers again; job %s goes on", job.job_id)
            return None  # a lost job gets its own engine_died error event
        if getattr(event, "job_id", None) != job.job_id:
            log.debug("ignoring %s of another job", type(event).__name__)
            return None
        if isinstance(event, Accepted):
            job.update(event)
            self._status(context, f"CSD {job.task}: {job.text()}")
            redraw_ui()
        elif isinstance(event, Progress):
            job.update(event)
            if event.preview_png:
                try:
                    self._preview.update(event.preview_png)
                    self._preview_used = True
                    job.previews += 1
                    job.preview_name = self._preview.name
                except (RuntimeError, OSError) as exc:
                    log.warning("could not show the preview: %s", exc)
            self._status(context, f"CSD {job.task}: {job.text()}")
            redraw_ui()
        elif isinstance(event, Cancelled) or (isinstance(event, ErrorReply)
                                              and event.code == ErrorCode.CANCELLED.value):
            return self._stop_all(context, "WARNING", "cancelled")
        elif isinstance(event, ErrorReply):
            oom = event.code == ErrorCode.OUT_OF_MEMORY.value
            hint = " (lower the texture size or quality)" if oom else ""
            if event.traceback:
                log.error("engine traceback for job %s:\n%s", job.job_id, event.traceback)
            return self._job_failed(context, f"failed [{event.code}]: {event.message}{hint}")
        elif isinstance(event, JobResult):
            if job.cancel_requested:
                return self._stop_all(context, "WARNING", "cancelled")
            return self._apply_result(context, event)
        return None

    def _apply_result(self, context, result):
        request = self._request
        try:
            message = self.apply(context, request, result)
        except ValueError as exc:
            return self._job_failed(context, f"failed: the result could not be applied: {exc}")
        self._outcome.applied.append(request.target)
        self._messages.append(message)
        log.info(message)
        SESSION.job = None
        return self._submit_next(context)

    def _job_failed(self, context, message: str):
        """One job failed: note it and go on with the next request."""
        target = self._request.target if self._request else ""
        self._outcome.failed.append((target, message))
        log.error("%s for %r %s", self.job_label, target, message)
        SESSION.job = None
        return self._submit_next(context)

    # -------------------------------------------------------------------------------------- ending
    def _stop_all(self, context, level: str, what: str):
        """Cancel, engine death or stop: the running job ends; requests not yet submitted are skipped."""
        if self._request is not None and self._index < len(self._requests):
            self._outcome.failed.append((self._request.target, what))
        self._outcome.skipped.extend(r.target for r in self._requests[self._index + 1:])
        self._index = len(self._requests)
        self._stop_level = level
        SESSION.job = None
        return self._finish(context)

    def _finish(self, context):
        """Report the batch and end the operator."""
        out = self._outcome
        n = len(self._requests)
        if len(out.applied) == n:
            level, message = "INFO", "; ".join(self._messages) if n <= 2 else \
                f"{self.job_label} done for all {n} objects"
        else:
            head = f"{self.job_label} " + ("; ".join(f"for {t!r} {m}" if t and n > 1 else m
                                                      for t, m in out.failed) or "stopped")
            if out.applied and n > 1:
                head += f" ({len(out.applied)} of {n} done"
                head += f", {len(out.skipped)} not started)" if out.skipped else ")"
            elif out.skipped:
                head += f" ({len(out.skipped)} not started)"
            level = getattr(self, "_stop_level", None) or "ERROR"
            if out.applied and level == "ERROR" and not out.skipped:
                level = "WARNING"
            message = head
        message += getattr(self, "batch_note", "")      # e.g. the selected objects a batch skipped, and why
        keep = bool(out.applied)
        self._cleanup(context, keep_preview=keep)
        self.report({level}, message)
        log.log(logging.ERROR if level == "ERROR" else logging.INFO, message)
        if SESSION.connected:
            start_idle_heartbeat()
        return {"FINISHED"} if out.applied else {"CANCELLED"}

    def _cleanup(self, context, keep_preview: bool) -> None:
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        preview = getattr(self, "_preview", None)
        if preview is not None:
            if keep_preview:
                preview.keep()
            else:
                preview.discard()
        SESSION.job = None
        self._status(context, None)
        redraw_ui()

    @staticmethod
    def _status(context, text: str | None) -> None:
        if bpy.app.background:
            return
        workspace = context.workspace
        if workspace is not None:
            workspace.status_text_set(text)


class CSD_OT_cancel(bpy.types.Operator):
    """Stop the running job in the engine (nothing is added to the file)"""

    bl_idname = "csd.cancel"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if SESSION.job is None:
            cls.poll_message_set("No job is running")
            return False
        return True

    def execute(self, context):
        SESSION.job.cancel_requested = True
        redraw_ui()
        return {"FINISHED"}


CLASSES = (CSD_OT_cancel,)
