"""Checks that an interpreter can run the engine: its Python, torch, device and engine versions (no bpy).

The check runs in a subprocess; `PythonCheck.poll()` is for UI timers, `check_python()` blocks.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .process_output import error_lines

CHECK_CODE = (
    "import json, sys\n"
    "info = {'python': sys.version.split()[0], 'executable': sys.executable}\n"
    "import torch\n"
    "info['torch'] = torch.__version__\n"
    "if torch.cuda.is_available():\n"
    "    info['device'] = 'cuda: ' + torch.cuda.get_device_name(0)\n"
    "elif getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():\n"
    "    info['device'] = 'mps'\n"
    "else:\n"
    "    info['device'] = 'cpu'\n"
    "import engine\n"
    "info['engine'] = getattr(engine, '__version__', 'unknown')\n"
    "print('CSD_CHECK ' + json.dumps(info))\n"
)


def addon_version() -> str:
    """This add-on's version from the blender_manifest.toml at the package root ("" in a source checkout: none there)."""
    import tomllib

    try:
        data = tomllib.loads((Path(__file__).resolve().parents[1] / "blender_manifest.toml").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("version", ""))


@dataclass
class CheckResult:
    """Outcome of checking an engine interpreter: ok, and either versions or the exact error.

    Args:
        ok: the interpreter imports torch and the engine.
        info: python, torch, device and engine versions.
        error: the lines that name the error.
        expected_engine: the engine version this add-on ships ("" for no comparison).
    """

    ok: bool
    info: dict = field(default_factory=dict)
    error: str = ""
    expected_engine: str = ""

    def lines(self) -> list[str]:
        """Text for the preferences panel."""
        if not self.ok:
            lines = self.error.splitlines()[-6:] or ["unknown error"]
            return [f"Error: {line}" if i == 0 else line for i, line in enumerate(lines)]
        i = self.info
        lines = [f"Python {i.get('python')}, torch {i.get('torch')}, engine {i.get('engine')}",
                 f"Device: {i.get('device')}"]
        if self.expected_engine and i.get("engine") != self.expected_engine:
            lines.append(f"Engine {i.get('engine')} does not match this add-on ({self.expected_engine}): "
                         "run Set Up Engine again")
        return lines


def parse_check_output(returncode: int, stdout: str, stderr: str) -> CheckResult:
    """Interpret the check subprocess's output.

    Args:
        returncode: its exit status.
        stdout, stderr: its output.
    """
    for line in stdout.splitlines():
        if line.startswith("CSD_CHECK ") and returncode == 0:
            try:
                return CheckResult(True, json.loads(line[len("CSD_CHECK "):]))
            except ValueError:
                break
    # the exception line (e.g. "ModuleNotFoundError: No module named 'torch'"), never "Traceback (most ...":
    lines = error_lines(stderr or stdout) or [f"exit status {returncode}, no output"]
    missing = re.search(r"No module named '(torch|engine)'", lines[-1])
    if missing:
        what = "PyTorch" if missing.group(1) == "torch" else "the CSD engine"
        lines.append(f"This Python does not have {what}: use Set Up Engine, or choose the Python of an "
                     "environment where it is installed")
    return CheckResult(False, error="\n".join(lines))


CHECK_TIMEOUT_S = 120.0


def check_python(python: str, timeout_s: float = CHECK_TIMEOUT_S, expected_engine: str = "") -> CheckResult:
    """Run the check in `python` and wait for it (blocking; background mode and tests).

    Args:
        python: path to the interpreter.
        timeout_s: give up after this long.
        expected_engine: the engine version that should be installed there ("" for no comparison).
    """
    check = PythonCheck(python, expected_engine)
    while True:
        result = check.poll_with_timeout(timeout_s)
        if result is not None:
            return result
        time.sleep(0.05)


class PythonCheck:
    """A running interpreter check; `poll()` returns None until it finished (for a UI timer)."""

    def __init__(self, python: str, expected_engine: str = "") -> None:
        self.python = python.strip()
        self.expected_engine = expected_engine
        self.started = time.monotonic()
        self.result: CheckResult | None = None
        self.proc: subprocess.Popen | None = None
        if not self.python:
            self.result = CheckResult(False, error="Python: no interpreter set")
        elif not os.path.isfile(self.python):
            self.result = CheckResult(False, error=f"Python: {self.python} does not exist")
        else:
            try:
                self.proc = subprocess.Popen([self.python, "-c", CHECK_CODE], stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            except OSError as exc:
                self.result = CheckResult(False, error=f"cannot run {self.python}: {exc}")

    def poll(self) -> CheckResult | None:
        """The result once the process exited, else None."""
        if self.result is None and self.proc is not None and self.proc.poll() is not None:
            out, err = self.proc.communicate()
            self.result = parse_check_output(self.proc.returncode, out, err)
            self.result.expected_engine = self.expected_engine
        return self.result

    def kill(self) -> None:
        """Stop a check that takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def poll_with_timeout(self, timeout_s: float) -> CheckResult | None:
        """Like poll(), but kills the check and returns an error once `timeout_s` passed since it started."""
        result = self.poll()
        if result is None and time.monotonic() - self.started > timeout_s:
            self.kill()
            self.result = result = CheckResult(False, error=f"{self.python} did not finish the check within "
                                                            f"{timeout_s:g} s")
        return result
