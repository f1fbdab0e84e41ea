"""Set Up Engine: a Python environment with PyTorch and the bundled engine wheel, made by pip (no bpy).

Steps, each a subprocess whose output is read line by line on a worker thread (never bpy there):

1. `<base python> -m venv <env>` (Blender's own Python by default),
2. online only: `pip install --upgrade pip` (a pip that prints machine-readable download progress),
3. `pip install "torch…"` from PyTorch's official index for the chosen compute (CUDA / ROCm / CPU; Apple uses
   PyPI's macOS wheels, which include Metal),
4. `pip install <engine wheel>`: the wheel build.py put inside the extension zip, so engine and add-on match,
5. the interpreter check (`interpreter_check`): Python, torch, device and engine version.

With a local package folder (`wheel_folder`) pip never goes online (`--no-index --find-links`). The UI polls
`EngineSetup.status()` from a timer; a failure keeps pip's own error line (`process_output.error_lines`).
"""
from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import interpreter_check
from .process_output import error_lines, network_cause

log = logging.getLogger(__name__)

# PyTorch's official wheel indexes (https://pytorch.org/get-started/locally/). Apple: PyPI's macOS wheels.
TORCH_INDEX_URLS = {
    "cuda": "https://download.pytorch.org/whl/cu128",
    "rocm": "https://download.pytorch.org/whl/rocm6.4",
    "cpu": "https://download.pytorch.org/whl/cpu",
    "mps": "",
}
COMPUTE_LABELS = {"cuda": "NVIDIA CUDA", "rocm": "AMD ROCm", "mps": "Apple Metal", "cpu": "CPU only"}
ENGINE_WHEEL_DIR = Path(__file__).resolve().parents[1] / "engine_wheel"   # csd_blender/engine_wheel
ENV_MARKER = "csd_engine_env.txt"          # written into environments this module made (safe to replace)
STATES = RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+)(?: \(([^)]*)\))?")


class SetupError(Exception):
    """A setup that cannot start or a step that failed; the message is for the user."""


def detect_compute() -> str:
    """The compute this machine most likely has: "cuda", "rocm", "mps" or "cpu" (no torch needed)."""
    if sys.platform == "darwin":
        return "mps" if platform.machine() == "arm64" else "cpu"
    if shutil.which("nvidia-smi") or os.path.exists("/proc/driver/nvidia/version") or (
            os.name == "nt" and os.path.exists(os.path.join(os.environ.get("SystemRoot", r"C:\Windows"),
                                                            "System32", "nvcuda.dll"))):
        return "cuda"
    if sys.platform.startswith("linux") and (os.path.exists("/dev/kfd") or shutil.which("rocminfo")):
        return "rocm"
    return "cpu"


def venv_python(env_dir: str | os.PathLike) -> str:
    """The interpreter of the environment at `env_dir` (bin/python, or Scripts\\python.exe on Windows)."""
    if os.name == "nt":
        return str(Path(env_dir) / "Scripts" / "python.exe")
    return str(Path(env_dir) / "bin" / "python")


def bundled_engine_wheel(folder: str | os.PathLike = ENGINE_WHEEL_DIR) -> str:
    """The engine wheel shipped inside the extension (build.py puts exactly one there).

    Args:
        folder: where to look.

    Raises:
        SetupError: none there (the add-on was not installed from a zip that build.py made).
    """
    wheels = sorted(Path(folder).glob("csd_blender_engine-*.whl"))
    if not wheels:
        raise SetupError(f"No engine wheel in {folder}: install the add-on from a zip made by build.py, or "
                         "install the engine into a Python by hand (README) and choose that Python")
    return str(wheels[-1])


def torch_requirement(engine_wheel: str) -> str:
    """The engine wheel's own requirement on torch (e.g. "torch>=2.1"), so step 3 installs what step 4 accepts.

    Args:
        engine_wheel: path of the wheel.
    """
    try:
        with zipfile.ZipFile(engine_wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = zf.read(name).decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise SetupError(f"{engine_wheel}: not a readable wheel ({exc})") from None
    for line in metadata.splitlines():
        match = re.match(r"Requires-Dist:\s*(torch\b[^;]*)(;.*)?$", line)
        if match and not match.group(2):
            return match.group(1).replace(" ", "")
    return "torch"


@dataclass
class SetupConfig:
    """What Set Up Engine makes and where from.

    Args:
        env_dir: folder of the new environment (replaced when a previous setup made it).
        compute: "cuda", "rocm", "mps" or "cpu" (see detect_compute()).
        engine_wheel: the engine wheel to install (bundled_engine_wheel()).
        base_python: the interpreter that creates the environment (Blender's own by default).
        wheel_folder: install only from this folder of wheels (offline; pip's --no-index --find-links).
        index_url: PyTorch index to use instead of TORCH_INDEX_URLS[compute] (mirrors).
        log_file: pip's whole output goes here too ("" for none).
        online_access: Blender's "Allow Online Access"; without it only `wheel_folder` installs are allowed.
    """

    env_dir: str
    compute: str
    engine_wheel: str
    base_python: str = sys.executable
    wheel_folder: str = ""
    index_url: str = ""
    log_file: str = ""
    online_access: bool = True

    def problems(self) -> list[str]:
        """What stops this setup from starting (empty when it can start)."""
        out = []
        if self.compute not in TORCH_INDEX_URLS:
            out.append(f"Compute: unknown choice {self.compute!r} (choose {', '.join(TORCH_INDEX_URLS)})")
        elif self.compute == "rocm" and not sys.platform.startswith("linux"):
            out.append("Compute: PyTorch's ROCm builds exist for Linux only; choose CPU")
        elif self.compute == "mps" and sys.platform != "darwin":
            out.append("Compute: Apple Metal needs macOS; choose CUDA, ROCm or CPU")
        if not os.path.isfile(self.engine_wheel):
            out.append(f"Engine wheel: {self.engine_wheel} does not exist")
        if not os.path.isfile(self.base_python):
            out.append(f"Base Python: {self.base_python} does not exist")
        if self.wheel_folder and not os.path.isdir(self.wheel_folder):
            out.append(f"Package folder: {self.wheel_folder} does not exist")
        if not self.wheel_folder and not self.online_access:
            out.append("Online access is off (Preferences > System > Network): allow it to download PyTorch, "
                       "or choose a local package folder")
        env = Path(self.env_dir)
        if env.exists() and any(env.iterdir()) and not (env / ENV_MARKER).is_file():
            out.append(f"Environment folder: {env} is not empty and was not made by Set Up Engine; choose an "
                       "empty folder")
        return out


@dataclass
class SetupStatus:
    """A snapshot of a setup for the UI (copied under the lock, safe to read on the main thread)."""

    state: str = RUNNING
    step: int = 0                      # 1-based index of the running step
    steps: int = 0
    title: str = "Starting"
    line: str = ""                     # the latest progress line (what pip is doing)
    fraction: float = 0.0              # overall progress in [0, 1]
    error: list = field(default_factory=list)
    python: str = ""                   # the environment's interpreter once DONE
    check: list = field(default_factory=list)   # interpreter check lines once DONE
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """Text for the preferences: the outcome, or the running step and pip's latest line."""
        if self.state == DONE:
            return [f"Engine set up in {self.elapsed_s:.0f} s: {self.python}", *self.check]
        if self.state == FAILED:
            return [f"Set Up Engine failed at '{self.title}':", *self.error]
        if self.state == CANCELLED:
            return ["Set Up Engine was cancelled"]
        return [f"Step {self.step}/{self.steps}: {self.title}", *([self.line] if self.line else [])]


class EngineSetup:
    """One run of Set Up Engine: `start()` on a worker thread and poll `status()`, or `run()` blocking.

    Args:
        config: what to make.
    """

    def __init__(self, config: SetupConfig) -> None:
        self.config = config
        self._status = SetupStatus()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._log = None

    # ------------------------------------------------------------------------------------------ control
    def start(self) -> None:
        """Run the setup on a worker thread (no bpy there); poll `status()` until its state is not RUNNING."""
        self._thread = threading.Thread(target=self.run, name="csd-engine-setup", daemon=True)
        self._thread.start()

    def status(self) -> SetupStatus:
        """A copy of the current status."""
        with self._lock:
            return replace(self._status, elapsed_s=time.monotonic() - self._started,
                           error=list(self._status.error), check=list(self._status.check))

    def cancel(self) -> None:
        """Stop the running step (its whole process group) and end the setup as CANCELLED."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc)

    def wait(self, timeout_s: float | None = None) -> SetupStatus:
        """Wait for a started setup to end; return its status."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.status()

    # ------------------------------------------------------------------------------------------ the run
    def run(self) -> SetupStatus:
        """Run every step in this thread; return the final status (never raises)."""
        try:
            problems = self.config.problems()
            if problems:
                raise SetupError("\n".join(problems))
            self._open_log()
            self._run_steps()
        except SetupError as exc:
            self._finish(CANCELLED if self._cancelled else FAILED, error=str(exc).splitlines())
        except Exception as exc:            # a bug here must still end the setup with a message
            log.exception("Set Up Engine failed")
            self._finish(FAILED, error=[f"{type(exc).__name__}: {exc}"])
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return self.status()

    def _run_steps(self) -> None:
        cfg = self.config
        python = venv_python(cfg.env_dir)
        self._set(steps=5 if not cfg.wheel_folder else 4)
        self._step("Creating the Python environment", 0.0)
        _remove_previous_env(cfg.env_dir)
        self._call([cfg.base_python, "-m", "venv", cfg.env_dir])
        Path(cfg.env_dir, ENV_MARKER).write_text("Made by CSD for Blender's Set Up Engine; safe to delete.\n",
                                                 encoding="utf-8")
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        source = ["--no-index", "--find-links", cfg.wheel_folder] if cfg.wheel_folder else []
        done = 0.05
        if not cfg.wheel_folder:
            self._step("Updating pip", done)
            self._call(pip + ["--upgrade", "pip"], weight=0.05)
            done += 0.05
        if self._pip_has_raw_progress(python):
            pip.append("--progress-bar=raw")
        index = cfg.index_url or TORCH_INDEX_URLS[cfg.compute]
        torch_source = source or (["--index-url", index] if index else [])
        self._step(f"Installing PyTorch ({COMPUTE_LABELS[cfg.compute]})", done)
        self._call(pip + [torch_requirement(cfg.engine_wheel)] + torch_source, weight=0.6)
        done += 0.6
        self._step("Installing the CSD engine", done)
        self._call(pip + [cfg.engine_wheel] + source, weight=0.95 - done)
        self._step("Checking the engine", 0.95)
        wheel_version = Path(cfg.engine_wheel).name.split("-")[1]
        result = interpreter_check.check_python(python, expected_engine=wheel_version)
        if result.ok and result.info.get("engine") != wheel_version:
            raise SetupError("\n".join(result.lines()[2:]))
        if not result.ok:
            raise SetupError("\n".join(result.lines()))
        self._finish(DONE, python=python, check=result.lines())

    def _pip_has_raw_progress(self, python: str) -> bool:
        """Whether this pip prints "Progress N of M" lines (`--progress-bar=raw`, pip 24.1+)."""
        try:
            out = subprocess.run([python, "-m", "pip", "install", "--help"], capture_output=True, text=True,
                                 timeout=60, env=_clean_env(bool(self.config.wheel_folder)),
                                 stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return "raw" in out.split("--progress-bar", 1)[-1][:400]

    # ------------------------------------------------------------------------------------------ helpers
    def _open_log(self) -> None:
        if self.config.log_file:
            Path(self.config.log_file).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.config.log_file, "w", encoding="utf-8")

    def _set(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    def _step(self, title: str, fraction: float) -> None:
        with self._lock:
            if self._cancelled:
                raise SetupError("cancelled")
            self._status.step += 1
            self._status.title, self._status.line, self._status.fraction = title, "", fraction
        log.info("Set Up Engine: %s", title)
        self._write_log(f"=== {title}\n")

    def _finish(self, state: str, **changes) -> None:
        self._set(state=state, line="", fraction=1.0 if state == DONE else self._status.fraction, **changes)
        self._write_log(f"=== {state}: {changes}\n")

    def _write_log(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text)
            self._log.flush()

    def _call(self, argv: list[str], weight: float = 0.05) -> None:
        """Run one step's command, streaming its output into the status; raise SetupError when it fails."""
        self._write_log("$ " + " ".join(argv) + "\n")
        base = self._status.fraction
        kwargs: dict = ({"start_new_session": True} if os.name == "posix"
                        else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)})
        with self._lock:
            if self._cancelled:
                raise SetupError("cancelled")
            try:
                self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, text=True,
                                              env=_clean_env(offline=bool(self.config.wheel_folder)),
                                              encoding="utf-8", errors="replace", bufsize=1, **kwargs)
            except OSError as exc:
                raise SetupError(f"cannot run {argv[0]}: {exc}") from None
            proc = self._proc
        output: list[str] = []
        current = ""
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            self._write_log(raw if raw.endswith("\n") else raw + "\n")
            if not line.strip():
                continue
            output.append(line)
            del output[:-400]
            match = _PROGRESS.match(line.strip())
            if match:
                got, total = int(match.group(1)), int(match.group(2))
                if total:
                    self._set(line=f"Downloading {current}: {got / 1e6:.0f} of {total / 1e6:.0f} MB",
                              fraction=base + weight * 0.8 * got / total)
                continue
            down = _DOWNLOADING.match(line)
            if down:
                current = down.group(1).rsplit("/", 1)[-1]
            self._set(line=line.strip()[:160])
        code = proc.wait()
        with self._lock:
            self._proc = None
            cancelled = self._cancelled
        if cancelled:
            raise SetupError("cancelled")
        if code != 0:
            text = "\n".join(output)
            cause = network_cause(text)
            lines = [cause] if cause else (error_lines(text) or [f"exit status {code}"])
            if self.config.log_file:
                lines.append(f"Full log: {self.config.log_file}")
            if cause and not self.config.wheel_folder:
                lines.append("Offline or behind a firewall? Make a Package Folder of wheels on a machine with "
                             "internet (pip download -d FOLDER torch …), set it above and run Set Up Engine again")
            raise SetupError("\n".join(lines))


def _clean_env(offline: bool = False) -> dict[str, str]:
    """The environment for pip: Blender's Python settings removed (they would leak into the new env).

    Args:
        offline: installing from a package folder only: the user's pip configuration (extra indexes, find-links)
            is left out too, so nothing but that folder is used.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE", "PYTHONEXECUTABLE",
                        "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")
           and not (offline and k.startswith("PIP_"))}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
    if offline:
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _remove_previous_env(env_dir: str) -> None:
    """Delete an environment an earlier Set Up Engine made (marker file present), so this one starts clean."""
    env = Path(env_dir)
    if (env / ENV_MARKER).is_file():
        log.info("removing the previous engine environment %s", env)
        shutil.rmtree(env)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
