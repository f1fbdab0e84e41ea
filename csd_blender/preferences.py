"""Add-on preferences (the top layer): how to run or reach the engine, the default model, Set Up Engine and the
interpreter check. Declared and drawn here; the operators and panels read them through props.prefs."""
# No `from __future__ import annotations`: bpy.props annotations must stay evaluated objects for Blender.

import textwrap

import bpy
from bpy.props import EnumProperty, StringProperty

from .link import setup as engine_setup
from .operators import models as operators_models
from .operators import setup as operators_setup
from .protocol.models import human_bytes
from .scene.paths import PACKAGE

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
    cache_folder: StringProperty(name="Models Folder", subtype="DIR_PATH", default="",
                                 description="Where the engine's models live (a Hugging Face cache, as HF_HOME: "
                                             "the files are in FOLDER/hub); an offline studio copies or shares "
                                             "it; empty uses the engine's default (~/.cache/huggingface)")
    hub_token: StringProperty(name="Hub Token", subtype="PASSWORD", default="",
                              description="Hugging Face read token for gated models (DeepFloyd IF): accept the "
                                          "model's licence on its page first, then create a token at "
                                          "huggingface.co/settings/tokens")
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
            row.operator(operators_setup.CSD_OT_check_python.bl_idname, text="Check", icon="CHECKMARK")
            check = operators_setup.running_check()
            if check is not None and check.result is None:
                layout.label(text="Checking...", icon="SORTTIME")
            for i, line in enumerate(self.check_report.splitlines()):
                layout.label(text=line, icon="INFO" if i == 0 else "BLANK1")
            layout.prop(self, "device")
            self.draw_models(layout.box())
        else:
            layout.prop(self, "endpoint")
            layout.prop(self, "token")
            layout.prop(self, "key_folder")
        layout.prop(self, "default_model")

    def draw_models(self, box):
        """Models: the recommended ones with size and presence, Download (progress, Cancel), Remove, token, folder."""
        box.label(text="Models", icon="FILE_VOLUME")
        box.prop(self, "cache_folder")
        row = box.row(align=True)
        row.prop(self, "hub_token")
        row.operator("wm.url_open", text="IF Licence", icon="URL").url = "https://huggingface.co/DeepFloyd/IF-I-XL-v1.0"
        task = operators_models.running_task()
        if task is not None:
            status = task.status()
            if status.action == "download":
                box.progress(factor=status.fraction, type="BAR", text=status.text)
                box.operator(operators_models.CSD_OT_models_cancel.bl_idname, icon="CANCEL")
        reason = operators_models.models_block_reason(self) if task is None else ""
        if reason:
            box.label(text=reason, icon="INFO")
        box.operator(operators_models.CSD_OT_models_refresh.bl_idname, text="Refresh", icon="FILE_REFRESH")
        listing = operators_models.listing()
        for model_id, label, info, entry in operators_models.recommended_rows():
            row = box.row(align=True)
            present = bool(info.get("present"))
            size = info.get("bytes_on_disk") or 0
            estimate = entry.estimate_bytes if entry is not None else 0
            state = ("present" if present else "partial" if size else "not downloaded") if listing else "?"
            text = f"{label}: {state}, " + (human_bytes(size) if size else f"~{human_bytes(estimate)}")
            if entry is not None and entry.gated:
                text += " (licence + token)"
            row.label(text=text, icon="CHECKMARK" if present else "BLANK1")
            sub = row.row(align=True)
            sub.enabled = task is None and not reason
            if not present:
                sub.operator(operators_models.CSD_OT_model_download.bl_idname, text="Download",
                             icon="IMPORT").model_id = model_id
            if size:
                sub.operator(operators_models.CSD_OT_model_remove.bl_idname, text="", icon="TRASH").model_id = model_id
        for line in textwrap.wrap(operators_models.last_report(), 100):
            box.label(text=line)

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


CLASSES = (CSDPreferences,)
