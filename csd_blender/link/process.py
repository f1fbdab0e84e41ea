"""Start and stop a local engine process (`python -m engine serve`) from a chosen interpreter (no bpy).

The engine runs in its own process group, gets a fresh random token through a 0600 file, binds a free
loopback port and writes it to an endpoint file; `start()` then handshakes. On any failure the error carries
the tail of the engine's log. A finalizer (run at exit or when the object is collected) terminates the
engine, so none is orphaned.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from ..protocol.errors import ProtocolError
from ..protocol.messages import HelloReply
from .client import EngineClient
from .process_output import error_lines

logger = logging.getLogger(__name__)


class EngineStartError(RuntimeError):
    """The engine did not come up; the message's next lines are the lines of its log that name the error.

    Args:
        message: what failed ("engine exited with code 1 during start").
        log_tail: the end of the engine's log; kept whole in `log_tail`, summarised in the message.
    """

    def __init__(self, message: str, log_tail: str = ""):
        summary = error_lines(log_tail)
        super().__init__("\n".join([message, *summary]))
        self.log_tail = log_tail


def log_tail(path: str | os.PathLike, lines: int = 40) -> str:
    """The last `lines` lines of a text file ("" when missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EngineProcess:
    """One engine subprocess.

    Args:
        python: the interpreter that has the engine installed (e.g. a venv's bin/python).
        log_file: the engine logs here (its stdout/stderr are appended too).
        device: "auto", "cpu", "cuda" or "cuda:N".
        extra_env: extra environment variables for the engine.
        cwd: working directory for the engine (None: inherit).
        pythonpath: prepended to PYTHONPATH when given (e.g. a source checkout).
    """

    def __init__(
        self,
        python: str,
        *,
        log_file: str | os.PathLike,
        device: str = "auto",
        extra_env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        pythonpath: str | os.PathLike | None = None,
    ):
        self.python = str(python)
        self.log_file = str(log_file)
        self.device = device
        self.extra_env = dict(extra_env or {})
        self.cwd = None if cwd is None else str(cwd)
        self.pythonpath = None if pythonpath is None else str(pythonpath)
        self.endpoint: str | None = None
        self.token: str | None = None
        self.hello: HelloReply | None = None
        self._proc: subprocess.Popen | None = None
        self._tmpdir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._aborted = False

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_running(self) -> bool:
        """True while the engine process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CSD_ENGINE_TOKEN", None)
        env.update(self.extra_env)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.pythonpath, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self, timeout_s: float = 60.0) -> tuple[str, str]:
        """Launch the engine and handshake with it.

        Args:
            timeout_s: for the whole start (process up, endpoint written, hello answered).

        Returns:
            (endpoint, token) for an `EngineClient`.

        Raises:
            EngineStartError: the process exited or did not answer in time; the message holds the log tail.
        """
        if self.is_running():
            raise RuntimeError(f"engine already running (pid {self.pid})")
        deadline = time.monotonic() + timeout_s
        self._tmpdir = tempfile.mkdtemp(prefix="csd-engine-")
        token = secrets.token_hex(32)
        token_file = os.path.join(self._tmpdir, "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token)
        endpoint_file = os.path.join(self._tmpdir, "endpoint.json")
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.python,
            "-m",
            "engine",
            "serve",
            "--bind",
            "tcp://127.0.0.1:0",
            "--token-file",
            token_file,
            "--endpoint-file",
            endpoint_file,
            "--log-file",
            self.log_file,
            "--device",
            self.device,
        ]
        logger.info("starting engine: %s", " ".join(cmd))
        kwargs: dict = (
            {"start_new_session": True}
            if os.name == "posix"
            else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        )
        with open(self.log_file, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self._env(),
                    **kwargs,
                )
            except OSError as exc:
                self._cleanup_tmp()
                raise EngineStartError(f"cannot run {self.python!r}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        try:
            endpoint = self._wait_endpoint(endpoint_file, deadline)
            try:
                os.unlink(token_file)  # the engine has read it before binding
            except OSError:
                pass
            client = EngineClient(endpoint, token)
            try:
                self.hello = client.connect(timeout_s=max(0.5, deadline - time.monotonic()))
            finally:
                client.close()
        except ProtocolError as exc:
            self._kill()
            raise EngineStartError(
                f"engine did not complete the handshake: {exc}", log_tail(self.log_file)
            ) from exc
        except EngineStartError:
            self._kill()
            raise
        self.endpoint, self.token = endpoint, token
        logger.info("engine pid %s ready at %s", self.pid, endpoint)
        return endpoint, token

    def _wait_endpoint(self, path: str, deadline: float) -> str:
        while True:
            if self._aborted:
                raise EngineStartError("engine start cancelled")
            if self._proc.poll() is not None:
                raise EngineStartError(
                    f"engine exited with code {self._proc.returncode} during start", log_tail(self.log_file)
                )
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    return json.load(fh)["endpoint"]
            if time.monotonic() > deadline:
                raise EngineStartError("engine did not start listening in time", log_tail(self.log_file))
            time.sleep(0.05)

    def abort(self) -> None:
        """Cancel a `start()` running on another thread: SIGKILL the engine now, without waiting.

        `start()` then raises EngineStartError("engine start cancelled") and reaps the process.
        """
        self._aborted = True
        if self._proc is not None and self._proc.poll() is None:
            self._signal(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Shut the engine down: shutdown message, then SIGTERM, then SIGKILL. Returns its exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None and self.endpoint and self.token:
            try:
                with EngineClient(self.endpoint, self.token) as client:
                    client.shutdown()
                    time.sleep(0.05)  # let the message leave before the socket closes
            except Exception as exc:  # noqa: BLE001 - fall through to signals
                logger.debug("shutdown message failed: %s", exc)
            self._wait(timeout_s * 0.6)
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            self._wait(timeout_s * 0.3)
        return self._kill()

    def _wait(self, timeout_s: float) -> None:
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass

    def _signal(self, sig: int) -> None:
        _signal_group(self._proc, sig)

    def _kill(self) -> int | None:
        """SIGKILL whatever is left, reap the process, remove the temporary folder."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
            self._wait(5.0)
        code = self._proc.returncode
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._cleanup_tmp()
        self.endpoint = self.token = None
        return code

    def _cleanup_tmp(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def restart(self, timeout_s: float = 60.0) -> tuple[str, str]:
        """Stop (if running) and start a fresh engine; returns the new (endpoint, token)."""
        self.stop()
        self._proc = None
        self._aborted = False
        return self.start(timeout_s)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the engine's whole process group (POSIX) so no grandchild is left behind."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == signal.SIGTERM:
            proc.terminate()
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _terminate(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM (the engine shuts down gracefully), then SIGKILL after `grace_s`; used by the finalizer."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
