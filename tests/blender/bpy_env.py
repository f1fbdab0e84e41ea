"""Headless Blender for the case_*.py modules: isolated user folders, then bpy, then the built extension.

Import this module BEFORE bpy: it points Blender's user resources/config/scripts at a temporary folder so
nothing touches the real user configuration. test_blender_cases.py runs each case module in its own
process (bpy can be imported once per process and keeps global state), passing the built zip in
CSD_TEST_ZIP and a scratch folder in CSD_BPY_HOME.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("CSD_BPY_HOME") or tempfile.mkdtemp(prefix="csd-bpy-"))
for _var, _sub in (("BLENDER_USER_RESOURCES", "resources"), ("BLENDER_USER_CONFIG", "config"),
                   ("BLENDER_USER_SCRIPTS", "scripts")):
    os.environ[_var] = str(HOME / _sub)
    (HOME / _sub).mkdir(parents=True, exist_ok=True)
if "bpy" in sys.modules:
    raise RuntimeError("bpy_env must be imported before bpy")

import bpy  # noqa: E402

REPO = "user_default"
MODULE = f"bl_ext.{REPO}.csd_blender"


def extension_zip() -> Path:
    """The zip built by the driver (CSD_TEST_ZIP), or a fresh linux build when run directly."""
    path = os.environ.get("CSD_TEST_ZIP")
    if path:
        return Path(path)
    sys.path.insert(0, str(ROOT))
    import build

    return build.build(["linux-x64"], out_dir=HOME / "dist")


def install():
    """Install and enable the extension from its zip; return its module (bl_ext.user_default.csd_blender)."""
    if MODULE in sys.modules and MODULE in bpy.context.preferences.addons:
        return sys.modules[MODULE]
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip()), repo=REPO,
                                                      enable_on_install=True)
    assert result == {"FINISHED"}, result
    assert MODULE in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
    return importlib.import_module(MODULE)


def submodule(name: str):
    """A module of the installed extension, e.g. submodule("link.session")."""
    return importlib.import_module(f"{MODULE}.{name}")


def panels() -> SimpleNamespace:
    """The extension's panel and UI-list classes by class name, and ORDER: their names in registration order
    (the order of the panels in the sidebar tab)."""
    classes = {cls.__name__: cls for module in install()._modules() for cls in module.CLASSES
               if issubclass(cls, (bpy.types.Panel, bpy.types.UIList))}
    return SimpleNamespace(ORDER=tuple(classes), **classes)


def start_local_engine():
    """Start a LOCAL engine on the CPU with this interpreter (`python -m engine serve`); return the session."""
    session = submodule("link.session").SESSION
    prefs = preferences()
    prefs.engine_mode, prefs.python_path, prefs.device = "LOCAL", sys.executable, "cpu"
    assert bpy.ops.csd.engine_start() == {"FINISHED"}
    assert session.connected and session.hello.device == "cpu", session.last_error
    return session


def when(condition, action, timeout: float = 180.0) -> threading.Thread:
    """Run `action` (no bpy!) from a helper thread once `condition` holds (a synchronous operator blocks the
    test's thread meanwhile); gives up after `timeout` seconds."""
    def run():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                action()
                return
            time.sleep(0.002)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def preferences():
    return bpy.context.preferences.addons[MODULE].preferences


def reset_scene() -> None:
    """An empty scene: factory startup file without its objects."""
    bpy.ops.wm.read_homefile(use_empty=True)


def counts() -> dict[str, int]:
    """How many datablocks of the kinds a job may create."""
    return {kind: len(getattr(bpy.data, kind)) for kind in ("images", "materials", "meshes", "objects",
                                                           "collections", "cameras")}


def add_suzanne(with_material: bool = True):
    """Suzanne at the origin, selected and active, optionally with a plain material."""
    bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(0.0, 0.0, 0.0))
    obj = bpy.context.active_object
    if with_material:
        mat = bpy.data.materials.new("Original")
        obj.data.materials.append(mat)
    return obj


def paint(obj, image, name: str = "Painted"):
    """Give `obj` a new material whose Base Color is `image` (an image texture node), as an artist's would be."""
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    obj.data.materials.append(mat)
    return mat
