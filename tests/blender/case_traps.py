"""The seven traps a new artist met (issue 23), each fixed and checked in headless Blender (no engine needed,
except the batch note, which uses the fake engine): modifiers say plainly that only "Use These UVs" fits; Reuse
Job Settings restores the panel of the result's own task; edit results are named by their prompts; text to mesh
stands on the cursor; zero-face meshes and non-meshes grey the buttons with the reason, and Texture Selected says
what it skipped; a mesh changed by a script without mesh.update() is re-evaluated before it is read.
(Trap 2, Set Up Engine's one-line cause, is tests/addon/test_engine_setup.py.)"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import logging
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from case_fake_engine import engine, ext, session  # noqa: F401  (fixtures: the extension, a fake engine)


def _sphere():
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.0)
    return bpy.context.active_object


# --- trap 1 ------------------------------------------------------------------------------------------------------
def test_a_mirror_modifier_says_only_use_these_uvs_fits_and_the_dialog_preselects_it(ext):
    bpy_env.reset_scene()
    obj = _sphere()
    obj.modifiers.new("Mirror", "MIRROR")             # the mirrored half reuses the UVs: they overlap
    uv_check = bpy_env.submodule("scene.uv_check")
    info = bpy_env.submodule("scene.mesh").mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert not info.maps_to_original
    with pytest.raises(uv_check.UVProblem) as problem:
        uv_check.check_mesh_uvs(obj.name, info, "ASK")
    message = str(problem.value)
    assert "cannot be written back" in message and "only 'Use These UVs' fits" in message
    assert "uv_action='UNWRAP'" not in message                  # no longer recommends what is refused next
    lines = uv_check.uv_warnings(bpy.context, [obj])
    assert any(uv_check.MODIFIER_ONLY_KEEP in line for line in lines)
    assert bpy_env.submodule("operators.uv_choice").keep_only(lines)   # the dialog pre-selects and offers KEEP only


# --- traps 3 and 4 -------------------------------------------------------------------------------------------
def _edit_result(obj):
    job_params = bpy_env.submodule("props.job_params")
    params = job_params.EditParams(target_prompt="a blue plain cube", edit_prompt="a red plain cube", seed=5)
    text = job_params.dumps_params(params)
    image = bpy.data.images.new("CSD Edit", 8, 8)
    mat = bpy.data.materials.new("CSD Edit")
    results = bpy_env.submodule("scene.results")
    rec = results.add_result(obj, image=image, materials=[mat], uv_name="UVMap", params_json=text, resolved={},
                             result_id="r1", task="edit")
    results.apply(obj, rec)
    return rec


def test_an_edit_result_is_named_by_its_prompts_and_reuse_restores_the_edit_panel(ext):
    bpy_env.reset_scene()
    obj = _sphere()
    rec = _edit_result(obj)
    assert rec.name == "a red plain cube → a blue plain cube" and rec.prompt == rec.name       # trap 4
    edit = bpy.context.scene.csd_edit
    edit.target_prompt, edit.seed = "", 0
    texture_prompt = bpy.context.scene.csd.prompt
    assert bpy.ops.csd.reuse_settings() == {"FINISHED"}                                        # trap 3
    assert edit.target_prompt == "a blue plain cube" and edit.edit_prompt == "a red plain cube" and edit.seed == 5
    assert bpy.context.scene.csd.prompt == texture_prompt                  # the texture panel is left alone
    assert bpy_env.submodule("scene.results").stored_task(obj) == "edit"   # the panels draw the button per task


# --- trap 5 ------------------------------------------------------------------------------------------------------
def test_text_to_mesh_stands_on_the_cursor(ext):
    bpy_env.reset_scene()
    bpy.context.scene.cursor.location = (1.0, -2.0, 0.25)
    ops = bpy_env.submodule("operators.generate")
    job = bpy_env.submodule("operators.job_operator")
    params = bpy_env.submodule("props.job_params").GenerateParams(prompt="a red cube")
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
    uvs = np.tile(np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], np.float32), (12, 1, 1))
    result = SimpleNamespace(arrays={"vertices": corners, "faces": faces, "uvs": uvs,
                                     "texture": np.full((16, 16, 3), 0.5, np.float32)}, meta={})
    request = job.JobRequest("generate", params, {}, data=tuple(bpy.context.scene.cursor.location))
    ops.CSD_OT_text_to_mesh.apply(SimpleNamespace(), bpy.context, request, result)
    obj = bpy.context.active_object
    world = np.array([obj.matrix_world @ v.co for v in obj.data.vertices])
    assert tuple(obj.location) == pytest.approx((1.0, -2.0, 0.25))
    assert world[:, 2].min() == pytest.approx(0.25, abs=1e-5)                 # on the cursor, not half under it
    assert (world[:, :2].min(0) + world[:, :2].max(0)) / 2 == pytest.approx([1.0, -2.0], abs=1e-5)


# --- trap 6 ------------------------------------------------------------------------------------------------------
def test_zero_face_meshes_and_non_meshes_grey_the_buttons_with_the_reason(ext):
    bpy_env.reset_scene()
    mesh = bpy.data.meshes.new("Points")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [(0, 1)], [])
    obj = bpy.data.objects.new("Points", mesh)
    bpy.context.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.csd.prompt = "a red sphere"
    edit = bpy.context.scene.csd_edit
    edit.target_prompt, edit.edit_prompt = "a blue sphere", "a red sphere"
    texture_ops, edit_ops = bpy_env.submodule("operators.texture"), bpy_env.submodule("operators.edit")
    for reason in (texture_ops.texture_block_reason(bpy.context), edit_ops.edit_block_reason(bpy.context),
                   edit_ops.texture_problem(obj)):
        assert "has no faces" in reason and "Generate texture" not in reason, reason
    bpy.ops.object.camera_add()
    for reason in (texture_ops.texture_block_reason(bpy.context), edit_ops.edit_block_reason(bpy.context)):
        assert "is a camera, not a mesh" in reason, reason


def test_texture_selected_says_which_selected_objects_it_skipped(engine, session, caplog):
    bpy_env.add_suzanne()
    bpy.ops.object.light_add(type="POINT", location=(3, 0, 0))
    light = bpy.context.active_object
    suzanne = bpy.data.objects["Suzanne"]
    suzanne.select_set(True)
    light.select_set(True)
    bpy.context.view_layer.objects.active = suzanne
    s = bpy.context.scene.csd
    s.prompt, s.steps, s.texture_size, s.seed, s.use_random_seed = "a red striped cube", 2, 64, 1, False
    with caplog.at_level(logging.INFO):
        assert bpy.ops.csd.texture_selected(uv_action="KEEP") == {"FINISHED"}
    assert any(f"skipped (not meshes): {light.name}" in r.getMessage() for r in caplog.records), caplog.text


# --- trap 7 ------------------------------------------------------------------------------------------------------
def test_a_uv_map_removed_by_a_script_without_update_is_not_sent(ext):
    bpy_env.reset_scene()
    obj = _sphere()
    obj.data.uv_layers.new(name="Painted")
    obj.data.uv_layers["Painted"].active_render = True
    mesh = bpy_env.submodule("scene.mesh")
    assert mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get()).uv_name == "Painted"
    obj.data.uv_layers.remove(obj.data.uv_layers["Painted"])        # a script, no mesh.update()
    info = mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert info.uv_name == "UVMap" and info.uv_name in obj.data.uv_layers
