"""The Models panel's engine side, without bpy: `python -m engine models …` in the engine's Python, read on a worker
thread.

Blender's Python has no huggingface_hub; the engine's does. `ModelsTask` starts `python -m engine models ACTION …
--json` as a subprocess, a worker thread reads its JSON lines (csd_blender/protocol/models.py) into a status that
the main thread polls (a timer copies it into the preferences); `cancel()` sends SIGTERM, which the command turns
into a clean stop that keeps the partial file, so the next Download resumes. The hub token travels in the
environment (HF_TOKEN), never on the command line. Nothing here touches bpy.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field

from ..protocol.models import human_bytes


@dataclass
class ModelsStatus:
    """What a models command has said so far (a copy: safe to read on the main thread).

    Attributes:
        action: "list", "download" or "remove".
        ids: the models it works on.
        done, total: bytes of the current download.
        models: the `model` events of a list, by id.
        finished: the process has ended; ok: it ended with status 0.
        error_code, error: the last `error` event (or why the process failed).
        events: every event, in order.
    """

    action: str
    ids: tuple = ()
    done: int = 0
    total: int = 0
    models: dict = field(default_factory=dict)
    finished: bool = False
    ok: bool = False
    error_code: str = ""
    error: str = ""
    events: list = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def text(self) -> str:
        """One line for the progress bar."""
        if self.action != "download":
            return f"{self.action} …"
        what = ", ".join(self.ids)
        if not self.total:
            return f"Downloading {what}: asking the hub …"
        return f"Downloading {what}: {human_bytes(self.done)} of {human_bytes(self.total)}"


def models_command(python: str, action: str, ids=(), models_dir: str = "", extra=()) -> list[str]:
    """The command line of `python -m engine models ACTION [ids] --json [--models-dir DIR] [extra]`."""
    cmd = [python, "-m", "engine", "models", action, *ids, "--json"]
    if models_dir.strip():
        cmd += ["--models-dir", models_dir.strip()]
    return cmd + list(extra)


class ModelsTask:
    """One `python -m engine models …` run on a worker thread.

    Args:
        python: the engine's interpreter.
        action: "list", "download" or "remove".
        ids: hub ids (download, remove).
        models_dir: the Models Folder ("" for the engine's default).
        token: hub token for gated models ("" for none); passed as HF_TOKEN.
        env: extra environment (tests point HF_ENDPOINT at a fake hub).
        cwd: working directory of the subprocess.
    """

    def __init__(self, python: str, action: str, ids=(), models_dir: str = "", token: str = "",
                 env: dict | None = None, cwd: str | None = None):
        self._status = ModelsStatus(action, tuple(ids))
        self._lock = threading.Lock()
        environment = {**os.environ, **(env or {}), "HF_HUB_OFFLINE": "0", "PYTHONUNBUFFERED": "1"}
        if token.strip():
            environment["HF_TOKEN"] = token.strip()
        self.command = models_command(python, action, ids, models_dir)
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=environment, cwd=cwd)
        self._thread = threading.Thread(target=self._read, name=f"csd-models-{action}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                s = self._status
                s.events.append(event)
                kind = event.get("event")
                if kind == "progress":
                    s.done, s.total = int(event.get("done", 0)), int(event.get("total", 0))
                elif kind == "model":
                    s.models[event["id"]] = event
                elif kind == "error":
                    s.error_code, s.error = event.get("code", "error"), event.get("message", "")
        stderr = self._proc.stderr.read()
        code = self._proc.wait()
        with self._lock:
            s = self._status
            s.finished, s.ok = True, code == 0
            if code != 0 and not s.error:
                tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
                s.error_code = "error"
                s.error = (tail[-1] if tail else f"exit status {code}") + " (is the engine's Python set up?)"

    def status(self) -> ModelsStatus:
        """A snapshot of the status."""
        with self._lock:
            s = self._status
            return ModelsStatus(s.action, s.ids, s.done, s.total, dict(s.models), s.finished, s.ok, s.error_code,
                                s.error, list(s.events))

    def cancel(self) -> None:
        """Stop the command (SIGTERM: a download stops cleanly and keeps what it has)."""
        if self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout: float | None = None) -> ModelsStatus:
        """Block until the command ends (background Blender and tests); return the final status."""
        self._thread.join(timeout)
        return self.status()
