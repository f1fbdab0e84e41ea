"""Result handling without an engine (headless bpy): empty slots, materials without a Principled BSDF, node
settings kept, and a failure half-way leaving the file as it was."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import json

import bpy
import numpy as np
import pytest

PARAMS = json.dumps({"model": "toy", "prompt": "a red plain cube", "seed": 5, "steps": 7, "task": "texture"})


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture
def mods(ext):
    bpy_env.reset_scene()
    return bpy_env.submodule("scene.apply_result"), bpy_env.submodule("scene.mesh")


def _apply(mods, obj, **kwargs):
    apply_result, scene_mesh = mods
    info = scene_mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    texture = np.random.default_rng(1).random((64, 64, 4)).astype(np.float32)
    return apply_result.apply_texture(obj, info, texture, None, {"params": {"steps": 7}}, PARAMS, **kwargs)


def _emission_material():
    mat = bpy.data.materials.new("Glow")
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for n in list(nodes):
        if n.type == "BSDF_PRINCIPLED":
            nodes.remove(n)
    emit = nodes.new("ShaderNodeEmission")
    out = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


def _all_datablocks() -> dict:
    return {k: sorted(x.name for x in getattr(bpy.data, k)) for k in ("materials", "images", "meshes")}


def test_empty_slot_and_emission_material_and_node_settings(mods):
    bpy.ops.mesh.primitive_cube_add()
    obj = bpy.context.active_object
    glow = _emission_material()
    rough = bpy.data.materials.new("Rough")
    if rough.node_tree is None:
        rough.use_nodes = True
    bsdf = next(n for n in rough.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Metallic"].default_value = 0.7
    noise = rough.node_tree.nodes.new("ShaderNodeTexNoise")
    rough.node_tree.links.new(noise.outputs["Fac"], bsdf.inputs["Roughness"])   # a linked input survives
    for m in (glow, None, rough):
        obj.data.materials.append(m)
    obj.data.polygons.foreach_set("material_index", np.array([0, 1, 2, 0, 1, 2], dtype=np.int32))
    applied = _apply(mods, obj)
    mats = [s.material for s in obj.material_slots]
    assert len(mats) == 3 and all("csd_result" in m for m in mats) and mats == applied.materials
    assert mats[0]["csd_source"] == glow and "csd_source" not in mats[1] and mats[2]["csd_source"] == rough
    for m in mats:                                   # each drives a Principled BSDF on its output
        out = next(n for n in m.node_tree.nodes if n.type == "OUTPUT_MATERIAL")
        assert out.inputs["Surface"].links[0].from_node.type == "BSDF_PRINCIPLED"
        b = out.inputs["Surface"].links[0].from_node
        assert b.inputs["Base Color"].links[0].from_node.image == applied.image
    b = next(n for n in mats[2].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert b.inputs["Metallic"].default_value == pytest.approx(0.7)
    assert b.inputs["Roughness"].links[0].from_node.type == "TEX_NOISE"
    assert not any(n.type == "TEX_IMAGE" for n in glow.node_tree.nodes)     # the user's material untouched
    indices = np.empty(6, dtype=np.int32)
    obj.data.polygons.foreach_get("material_index", indices)
    np.testing.assert_array_equal(indices, [0, 1, 2, 0, 1, 2])

    assert bpy.ops.csd.result_delete() == {"FINISHED"}            # the originals come back, nothing is left
    assert [s.material for s in obj.material_slots] == [glow, None, rough]
    assert not any("csd_result" in m for m in bpy.data.materials)
    assert not any("csd_result" in i for i in bpy.data.images)


def test_failure_half_way_leaves_the_file_as_it_was(mods, monkeypatch):
    obj = bpy_env.add_suzanne()
    _apply(mods, obj)                                 # a previous result that must survive the failure
    before = _all_datablocks()
    slots = [s.material.name for s in obj.material_slots]
    results = bpy_env.submodule("scene.results")

    def broken_apply(o, rec):
        raise RuntimeError("simulated failure while switching slots")

    monkeypatch.setattr(results, "apply", broken_apply)
    with pytest.raises(RuntimeError, match="simulated"):
        _apply(mods, obj)
    assert _all_datablocks() == before and [s.material.name for s in obj.material_slots] == slots
    assert len(obj.csd.results) == 1 and obj.csd.results[0].applied
    assert obj["csd_params"] == PARAMS


def test_unsaved_file_refuses_file_storage_before_creating_anything(mods):
    apply_result, _ = mods
    obj = bpy_env.add_suzanne()
    before = _all_datablocks()
    with pytest.raises(ValueError, match="save the .blend first"):
        _apply(mods, obj, options=apply_result.StoreOptions(pack=False))
    assert _all_datablocks() == before and len(obj.csd.results) == 0


def test_saved_file_keeps_originals_results_and_the_packed_png(mods, tmp_path):
    obj = bpy_env.add_suzanne()                        # slot 0: "Original", used by nothing once replaced
    _apply(mods, obj)
    _apply(mods, obj, options=mods[0].StoreOptions(keep_previous=True))
    path = str(tmp_path / "kept.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=path)
    obj = bpy.data.objects["Suzanne"]
    assert "Original" in bpy.data.materials                # kept alive by the results' csd_source reference
    results = obj.csd.results
    assert len(results) == 2 and [r.applied for r in results] == [False, True]
    assert all(r.image is not None and r.image.packed_file is not None for r in results)
    assert obj.material_slots[0].material == results[1].slots[0].material
    assert bpy.ops.csd.result_apply(index=0) == {"FINISHED"}
    assert obj.material_slots[0].material == results[0].slots[0].material


def test_reuse_settings_of_an_edit_result_fills_the_edit_panel(mods):
    apply_result, scene_mesh = mods
    obj = bpy_env.add_suzanne()
    info = scene_mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    texture = np.full((64, 64, 3), 0.5, np.float32)
    stored = {"task": "edit", "target_prompt": "a blue plain sphere", "edit_prompt": "a red plain sphere",
              "seed": 11, "steps": None, "quality": "fast", "unknown_field": 3}
    apply_result.apply_texture(obj, info, texture, None, {"params": {}}, json.dumps(stored), task="edit")
    edit = bpy.context.scene.csd_edit
    edit.target_prompt, edit.seed, edit.steps = "something else", 1, 50
    assert bpy.ops.csd.result_reuse() == {"FINISHED"}
    assert (edit.target_prompt, edit.edit_prompt, edit.seed, edit.steps, edit.quality) == \
        ("a blue plain sphere", "a red plain sphere", 11, 0, "fast")
    assert obj.csd.results[0].task == "edit"
