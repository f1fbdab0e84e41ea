"""The built zip installs as an extension, registers, and unregisters without leftovers (headless bpy)."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import addon_utils
import bpy
import pytest

EXPECTED_OPERATORS = ("texture_from_text", "add_camera_rig", "cancel", "engine_start", "engine_stop",
                      "engine_release", "open_log", "check_python", "reuse_settings", "texture_selected",
                      "result_apply", "result_reuse", "result_delete")
EXPECTED_TYPES = ("CSD_PT_texture", "CSD_PT_engine", "CSDSettings", "CSD_OT_texture_from_text",
                  "CSD_OT_add_camera_rig", "CSD_OT_cancel", "CSD_OT_engine_start", "CSD_OT_engine_stop",
                  "CSD_OT_engine_release", "CSDPreferences", "CSD_PT_results", "CSD_UL_results", "CSDResult",
                  "CSDObjectSettings", "CSD_OT_texture_selected")


def _registered_classes() -> list[str]:
    """Names of this extension's classes that Blender has registered now."""
    bases = (bpy.types.Operator, bpy.types.Panel, bpy.types.PropertyGroup, bpy.types.AddonPreferences,
             bpy.types.UIList)
    return sorted({cls.__name__ for base in bases for cls in base.__subclasses__()
                   if cls.__module__.startswith(bpy_env.MODULE) and cls.is_registered})


def _registered() -> dict:
    return {
        "types": _registered_classes(),
        "rna": sorted(name for name in dir(bpy.types) if name.startswith("CSD")),
        "operators": sorted(name for name in dir(bpy.ops.csd) if not name.startswith("_")),
        "scene_prop": hasattr(bpy.types.Scene, "csd"),
        "object_prop": hasattr(bpy.types.Object, "csd"),
        "addon": bpy_env.MODULE in bpy.context.preferences.addons,
    }


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


def test_installs_as_extension_module(ext):
    assert ext.__name__ == "bl_ext.user_default.csd_blender"
    prefs = bpy_env.preferences()
    assert type(prefs).bl_idname == bpy_env.MODULE
    assert prefs.default_model == "toy" and prefs.engine_mode == "LOCAL" and prefs.python_path == ""
    # the bundled pyzmq wheel was installed into the extensions' site-packages
    site = bpy_env.HOME / "resources" / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert (site / "zmq" / "__init__.py").exists()
    assert any(p.name.startswith("pyzmq-27.1.0") for p in site.glob("*.dist-info"))


def test_registers_settings_operators_and_panels(ext):
    state = _registered()
    for name in EXPECTED_TYPES:
        assert name in state["types"], name
    for op in EXPECTED_OPERATORS:
        assert op in state["operators"], op
    assert state["scene_prop"] and state["object_prop"]
    settings = bpy.context.scene.csd
    assert settings.quality == "balanced" and settings.camera_mode == "AUTO"
    panels = [cls for cls in bpy.types.Panel.__subclasses__() if getattr(cls, "bl_category", "") == "CSD"]
    assert sorted(p.bl_label for p in panels) == ["Edit selected object", "Engine", "Generate texture from text",
                                                  "Results", "Text to mesh"]
    assert "edit_object" in state["operators"] and "CSD_OT_edit_object" in state["types"]


def test_unregister_register_cycle_leaves_nothing_behind(ext):
    before = _registered()
    addon_utils.disable(bpy_env.MODULE, default_set=True)
    after = _registered()
    assert after == {"types": [], "rna": [], "operators": [], "scene_prop": False, "object_prop": False,
                     "addon": False}, after
    addon_utils.enable(bpy_env.MODULE, default_set=True)
    assert _registered() == before
    # and once more, to catch state kept in module globals between cycles
    addon_utils.disable(bpy_env.MODULE, default_set=True)
    addon_utils.enable(bpy_env.MODULE, default_set=True)
    assert _registered() == before


def test_files_are_written_under_the_extension_user_folder(ext):
    paths = bpy_env.submodule("scene.paths")
    folder = paths.user_dir("logs")
    expected = bpy.utils.extension_path_user(bpy_env.MODULE, path="logs")
    assert folder == expected and str(bpy_env.HOME) in folder
