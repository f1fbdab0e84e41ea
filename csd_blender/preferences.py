"""Add-on preferences: how to run or reach the engine, the default model, and the interpreter check."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import os
import textwrap

import bpy
from bpy.props import EnumProperty, StringProperty

from . import engine_session, engine_setup, interpreter_check, operators_setup
from .paths import PACKAGE, user_dir

MODE_ITEMS = [
    ("LOCAL", "Local", "Start the engine with a Python interpreter that has it installed"),
    ("REMOTE", "Remote", "Connect to an engine that is already running (this or another machine)"),
]
DEVICE_ITEMS = [
    ("auto", "Automatic", "CUDA when available, else CPU"),
    ("cuda", "CUDA", "NVIDIA GPU"),
    ("cpu", "CPU", "Slow, but works everywhere"),
]

COMPUTE_ITEMS = [
    ("AUTO", "Automatic", "The compute this machine has (detected when the setup starts)"),
    ("CUDA", "NVIDIA CUDA", "PyTorch for NVIDIA GPUs (download.pytorch.org, CUDA 12.8 build)"),
    ("ROCM", "AMD ROCm", "PyTorch for AMD GPUs on Linux (download.pytorch.org, ROCm build)"),
    ("MPS", "Apple", ("PyTorch for macOS (PyPI's wheels, with Metal); the engine does not use Metal yet and "
                      "runs on the CPU there")),
    ("CPU", "CPU", "PyTorch without a GPU: small, slow, works everywhere"),
]

_check: interpreter_check.PythonCheck | None = None


def start_block_reason(prefs) -> str:
    """Why Start Engine cannot run with these preferences ("" when it can)."""
    if prefs.engine_mode != "LOCAL":
        return "" if prefs.endpoint.strip() else "Set the remote engine's Endpoint in the add-on preferences"
    python = bpy.path.abspath(prefs.python_path).strip()
    if not python:
        return "No engine Python yet: use Set Up Engine in the add-on preferences"
    if not os.path.isfile(python):
        return f"The engine Python {python} does not exist: run Set Up Engine again"
    return ""


class CSDPreferences(bpy.types.AddonPreferences):
    """Where the engine runs."""

    bl_idname = PACKAGE

    engine_mode: EnumProperty(name="Engine", items=MODE_ITEMS, default="LOCAL")
    python_path: StringProperty(name="Python", subtype="FILE_PATH", default="",
                                description="Python interpreter with the CSD engine and PyTorch installed "
                                            "(e.g. <venv>/bin/python); Blender's own Python cannot run it")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    endpoint: StringProperty(name="Endpoint", default="tcp://127.0.0.1:5555",
                             description="Address of the running engine")
    key_folder: StringProperty(name="Key Folder", subtype="DIR_PATH", default="",
                               description="Folder with the remote engine's CurveZMQ public key "
                                           "(server.key); "
                                           "empty for an unencrypted engine on this machine")
    token: StringProperty(name="Token", subtype="PASSWORD", default="",
                          description="Access token the remote engine printed when it started")
    default_model: StringProperty(name="Default Model", default="toy",
                                  description="Model for jobs whose Model field is empty: 'toy' (bundled, "
                                              "for tests and demos), a hub id or a local diffusers folder")
    cache_folder: StringProperty(name="Model Cache", subtype="DIR_PATH", default="",
                                 description="Where the engine keeps downloaded models (HF_HOME); empty uses "
                                             "the engine's default")
    check_report: StringProperty(name="Check Result", default="", options={"SKIP_SAVE"})
    setup_compute: EnumProperty(name="Compute", items=COMPUTE_ITEMS, default="AUTO",
                                description="Which PyTorch build Set Up Engine installs")
    setup_folder: StringProperty(name="Environment Folder", subtype="DIR_PATH", default="",
                                 description="Where Set Up Engine creates the engine's Python environment; "
                                             "empty: the extension's user folder")
    setup_wheel_folder: StringProperty(name="Package Folder", subtype="DIR_PATH", default="",
                                       description="Install only from this folder of wheels (offline "
                                                   "machines); empty: download from PyTorch's index and PyPI")
    setup_report: StringProperty(name="Set Up Result", default="", options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_mode", expand=True)
        if self.engine_mode == "LOCAL":
            self.draw_setup(layout.box())
            row = layout.row(align=True)
            row.prop(self, "python_path")
            row.operator(CSD_OT_check_python.bl_idname, text="Check", icon="CHECKMARK")
            if _check is not None and _check.result is None:
                layout.label(text="Checking...", icon="SORTTIME")
            for i, line in enumerate(self.check_report.splitlines()):
                layout.label(text=line, icon="INFO" if i == 0 else "BLANK1")
            layout.prop(self, "device")
            layout.prop(self, "cache_folder")
        else:
            layout.prop(self, "endpoint")
            layout.prop(self, "token")
            layout.prop(self, "key_folder")
        layout.prop(self, "default_model")

    def draw_setup(self, box):
        """Set Up Engine: compute choice, folders, the button or the running setup's progress, the outcome."""
        box.label(text="Engine Environment", icon="CONSOLE")
        setup = operators_setup.running_setup()
        if setup is not None:
            status = setup.status()
            box.progress(factor=status.fraction, type="BAR",
                         text=f"Step {status.step}/{status.steps}: {status.title}")
            if status.line:
                box.label(text=status.line)
            box.operator(operators_setup.CSD_OT_setup_engine_cancel.bl_idname, icon="CANCEL")
            return
        row = box.row()
        row.prop(self, "setup_compute")
        if self.setup_compute == "AUTO":
            detected = engine_setup.COMPUTE_LABELS[engine_setup.detect_compute()]
            row.label(text=f"Detected: {detected}")
        box.prop(self, "setup_folder", placeholder=operators_setup.default_env_dir())
        box.prop(self, "setup_wheel_folder", placeholder="Download (needs Online Access)")
        box.operator(operators_setup.CSD_OT_setup_engine.bl_idname, icon="IMPORT")
        failed = self.setup_report.startswith(("Set Up Engine failed", "Set Up Engine cannot"))
        lines = [part for line in self.setup_report.splitlines() for part in textwrap.wrap(line, 100)]
        for i, line in enumerate(lines):           # a label is one line: long pip errors are wrapped
            box.label(text=line, icon=("ERROR" if failed else "CHECKMARK") if i == 0 else "BLANK1")


def get_preferences() -> CSDPreferences:
    """This add-on's preferences (raises a clear error when the add-on is not enabled)."""
    addon = bpy.context.preferences.addons.get(PACKAGE)
    if addon is None:
        raise RuntimeError(f"the add-on {PACKAGE!r} is not enabled")
    return addon.preferences


def engine_settings() -> engine_session.EngineSettings:
    """The preferences as EngineSettings for EngineSession.start()."""
    prefs = get_preferences()
    return engine_session.EngineSettings(
        mode=prefs.engine_mode, python=bpy.path.abspath(prefs.python_path), device=prefs.device,
        endpoint=prefs.endpoint, token=prefs.token, key_folder=bpy.path.abspath(prefs.key_folder),
        cache_folder=bpy.path.abspath(prefs.cache_folder),
        log_file=os.path.join(user_dir("logs"), "engine.log"),
        online_access=bool(getattr(bpy.app, "online_access", True)))


def _redraw_preferences() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _poll_check():
    global _check
    if _check is None:
        return None
    result = _check.poll_with_timeout(interpreter_check.CHECK_TIMEOUT_S)
    if result is None:
        return 0.2
    prefs = bpy.context.preferences.addons.get(PACKAGE)
    if prefs is not None:
        prefs.preferences.check_report = "\n".join(result.lines())
    _check = None
    _redraw_preferences()
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


CLASSES = (CSD_OT_check_python, CSDPreferences)


def register() -> None:
    operators_setup.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    global _check
    if bpy.app.timers.is_registered(_poll_check):
        bpy.app.timers.unregister(_poll_check)
    if _check is not None:
        _check.kill()
        _check = None
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    operators_setup.unregister()
