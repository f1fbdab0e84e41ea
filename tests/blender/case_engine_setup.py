"""Set Up Engine in headless Blender: a failing install names pip's error, a local package folder gives an
interpreter that Check accepts and that starts the engine (slow: installs PyTorch into a fresh venv).

The package folder holds the test environment's own wheels (`pip download` of the bundled engine wheel and the
installed torch version, through this machine's pip configuration), cached in .wheels-cache/engine-env.
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import hashlib
import importlib.metadata
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import bpy
import pytest

CACHE = bpy_env.ROOT / ".wheels-cache" / "engine-env"


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture(scope="module")
def engine_wheel(ext):
    folder = Path(ext.__file__).parent / "engine_wheel"
    wheels = sorted(folder.glob("csd_blender_engine-*.whl"))
    assert len(wheels) == 1, f"the installed extension should carry one engine wheel in {folder}: {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def package_folder(engine_wheel):
    """The engine's dependencies as wheels (reused while the wheel's requirements and torch stay the same)."""
    with zipfile.ZipFile(engine_wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    torch_version = importlib.metadata.version("torch")
    requires = sorted(line for line in meta.splitlines() if line.startswith("Requires-Dist:"))
    key = hashlib.sha256(json.dumps([requires, torch_version, sys.version]).encode()).hexdigest()
    stamp = CACHE / "stamp.txt"
    if not (stamp.is_file() and stamp.read_text() == key):
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(CACHE),
                               str(engine_wheel), f"torch=={torch_version}"],
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            pytest.skip(f"cannot gather the engine's wheels (no package index?): {proc.stderr[-1500:]}")
        stamp.write_text(key)
    return CACHE


def _configure(folder: Path, wheels: Path) -> None:
    prefs = bpy_env.preferences()
    prefs.engine_mode = "LOCAL"
    prefs.python_path = ""
    prefs.device = "cpu"
    prefs.setup_compute = "CPU"
    prefs.setup_folder = str(folder)
    prefs.setup_wheel_folder = str(wheels)


def test_start_is_disabled_with_the_reason_until_an_interpreter_is_configured(ext):
    _configure(bpy_env.HOME / "env", bpy_env.HOME)
    assert not bpy.ops.csd.engine_start.poll()
    with pytest.raises(RuntimeError, match="No engine Python yet: use Set Up Engine"):
        bpy.ops.csd.engine_start()
    assert bpy_env.submodule("operators.engine").start_block_reason().startswith("No engine Python yet")


def _draw_preferences(prefs) -> list:
    from ui_record import RecordingLayout

    calls: list = []

    class Owner:                              # the real preferences, drawn into a recording layout
        layout = RecordingLayout(calls)

        def __getattr__(self, name):
            return getattr(prefs, name)

    bpy_env.submodule("preferences").CSDPreferences.draw(Owner(), bpy.context)
    return calls


def test_engine_panel_comes_first_and_says_why_start_is_disabled(ext):
    from types import SimpleNamespace

    from ui_record import RecordingLayout

    _configure(bpy_env.HOME / "env", bpy_env.HOME)
    panels = bpy_env.panels()
    assert panels.ORDER[0] == "CSD_PT_engine"
    calls: list = []
    panels.CSD_PT_engine.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    assert ("label", "No engine Python yet: use Set Up Engine in the add-on preferences") in calls
    assert ("operator", "preferences.addon_show") in calls


def test_preferences_show_setup_and_a_running_setups_progress(ext, engine_wheel, tmp_path):
    prefs = bpy_env.preferences()
    # Check compares the engine with the version of the add-on installed from the zip
    assert bpy_env.submodule("link.interpreter_check").addon_version() == engine_wheel.name.split("-")[1]
    _configure(tmp_path / "env", tmp_path)
    prefs.setup_compute = "AUTO"
    idle = _draw_preferences(prefs)
    prefs.setup_compute = "CPU"
    assert ("operator", "csd.setup_engine") in idle and ("prop", "setup_compute") in idle
    assert any(c[0] == "label" and c[1].startswith("Detected: ") for c in idle)
    ops_setup, setup_mod = bpy_env.submodule("operators.setup"), bpy_env.submodule("link.setup")
    hang = tmp_path / "hanging_python"
    hang.write_text("#!/bin/sh\necho 'Collecting torch'\nsleep 60\n")
    hang.chmod(0o755)
    config = ops_setup.setup_config(prefs)
    config.base_python = str(hang)
    ops_setup._setup = setup = setup_mod.EngineSetup(config)   # as the interactive operator leaves it
    setup.start()
    try:
        deadline = time.monotonic() + 10
        while setup.status().line != "Collecting torch":
            assert time.monotonic() < deadline, setup.status()
            time.sleep(0.01)
        running = _draw_preferences(prefs)
        assert ("progress", "Step 1/4: Creating the Python environment") in running
        assert ("label", "Collecting torch") in running and ("operator", "csd.setup_engine_cancel") in running
        assert not bpy.ops.csd.setup_engine.poll()
        assert bpy.ops.csd.setup_engine_cancel() == {"FINISHED"}
        assert setup.wait(10).state == setup_mod.CANCELLED
        assert ops_setup._poll_setup() is None and ops_setup.running_setup() is None   # the timer adopts it
        assert prefs.setup_report == "Set Up Engine was cancelled" and prefs.python_path == ""
    finally:
        setup.cancel()
        ops_setup._setup = None


def test_a_failing_install_reports_pips_error_line(ext, engine_wheel):
    empty = bpy_env.HOME / "empty-packages"
    empty.mkdir(exist_ok=True)
    _configure(bpy_env.HOME / "env-failing", empty)
    with pytest.raises(RuntimeError, match="No matching distribution found for torch"):
        bpy.ops.csd.setup_engine()
    prefs = bpy_env.preferences()
    report = prefs.setup_report.splitlines()
    assert report[0] == "Set Up Engine failed at 'Installing PyTorch (CPU only)':", report
    assert any(line.startswith("ERROR: No matching distribution found for torch") for line in report[1:-1])
    assert "Traceback" not in prefs.setup_report
    assert report[-1].startswith("Full log: ") and report[-1].endswith("engine_setup.log")   # where to look next
    assert prefs.python_path == ""                   # nothing half-made is adopted


def test_set_up_engine_makes_an_interpreter_that_check_accepts_and_that_starts(ext, engine_wheel, package_folder):
    env = bpy_env.HOME / "engine env"                 # a space in the path, as user folders have
    _configure(env, package_folder)
    assert bpy.ops.csd.setup_engine() == {"FINISHED"}
    prefs = bpy_env.preferences()
    setup = bpy_env.submodule("link.setup")
    assert prefs.python_path == setup.venv_python(env)
    assert prefs.setup_report.startswith("Engine set up in"), prefs.setup_report
    version = engine_wheel.name.split("-")[1]          # the bundled wheel's version is what gets installed
    assert prefs.check_report.startswith("Python 3.") and f"engine {version}" in prefs.check_report
    prefs.check_report = ""
    assert bpy.ops.csd.check_python() == {"FINISHED"}
    assert "torch" in prefs.check_report and "Device: cpu" in prefs.check_report
    session = bpy_env.submodule("link.session").SESSION
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    try:
        assert session.connected and session.hello.engine_version == version
    finally:
        session.stop()
