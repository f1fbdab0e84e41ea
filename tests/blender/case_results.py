"""Results that respect the file, against a real engine on the toy prior (headless bpy, the extension's zip).

Material layout kept per slot, shared meshes, one result per object (or variants), the stored PNG, and
Texture Selected Objects with cancel. Jobs are short (2 steps, 64² textures) except the 1024² storage check.
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import time

import bpy
import numpy as np
import pytest

from case_real_engine import _configure, ext, model, session  # noqa: F401  (fixtures)


def _two_material_cube(name="Cube", location=(0.0, 0.0, 0.0)):
    """A cube with MatA (red, rough) on even faces and MatB (blue, glossy) on odd faces."""
    bpy.ops.mesh.primitive_cube_add(size=1.5, location=location)
    obj = bpy.context.active_object
    obj.name = name
    for mat_name, colour, rough in (("MatA", (0.8, 0.1, 0.1, 1.0), 0.9), ("MatB", (0.1, 0.1, 0.8, 1.0), 0.2)):
        mat = bpy.data.materials.get(mat_name) or bpy.data.materials.new(mat_name)
        if mat.node_tree is None:
            mat.use_nodes = True
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Base Color"].default_value = colour
        bsdf.inputs["Roughness"].default_value = rough
        obj.data.materials.append(mat)
    obj.data.polygons.foreach_set("material_index", np.arange(len(obj.data.polygons), dtype=np.int32) % 2)
    obj.data.update()
    return obj


def _tree(mat) -> tuple:
    """A material's node tree as plain data: nodes, links and every unlinked input value."""
    nodes = sorted((n.name, n.bl_idname) for n in mat.node_tree.nodes)
    links = sorted((lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier)
                   for lk in mat.node_tree.links)
    values = []
    for n in mat.node_tree.nodes:
        for s in n.inputs:
            if hasattr(s, "default_value") and not s.is_linked:
                v = s.default_value
                values.append((n.name, s.identifier, tuple(v) if hasattr(v, "__len__") else v))
    return nodes, links, sorted(values, key=repr)


def _indices(obj) -> np.ndarray:
    out = np.empty(len(obj.data.polygons), dtype=np.int32)
    obj.data.polygons.foreach_get("material_index", out)
    return out


def _texture_node(mat):
    return mat.node_tree.nodes["CSD Texture"]


def _result_counts() -> dict:
    mats = [m for m in bpy.data.materials if "csd_result" in m]
    imgs = [i for i in bpy.data.images if "csd_result" in i]
    previews = [i for i in bpy.data.images if i.name.startswith("CSD Preview")]
    return {"materials": len(mats), "images": len(imgs), "previews": len(previews)}


def test_two_material_cube_keeps_its_layout_and_its_materials(session, model):
    bpy_env.reset_scene()
    obj = _two_material_cube()
    mat_a, mat_b = bpy.data.materials["MatA"], bpy.data.materials["MatB"]
    trees = {m.name: _tree(m) for m in (mat_a, mat_b)}
    indices = _indices(obj)
    _configure(steps=2, size=64, model=model)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}

    np.testing.assert_array_equal(_indices(obj), indices)                 # face material indices unchanged
    assert len(obj.material_slots) == 2
    slots = [s.material for s in obj.material_slots]
    assert slots[0] not in (mat_a, mat_b) and slots[1] not in (mat_a, mat_b)
    image = _texture_node(slots[0]).image
    assert image is not None and _texture_node(slots[1]).image == image   # both slots show the new image
    for slot_mat, source in zip(slots, (mat_a, mat_b)):
        assert slot_mat["csd_source"] == source
        bsdf = next(n for n in slot_mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        assert bsdf.inputs["Base Color"].links[0].from_node.name == "CSD Texture"
        src_bsdf = next(n for n in source.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        # every other setting kept: roughness of the copy is the source's
        rough = src_bsdf.inputs["Roughness"].default_value
        assert bsdf.inputs["Roughness"].default_value == pytest.approx(rough)
    for m in (mat_a, mat_b):                                              # originals untouched
        assert m.name in bpy.data.materials and _tree(m) == trees[m.name]
    assert len(obj.csd.results) == 1 and obj.csd.results[0].applied


def test_shared_mesh_only_the_textured_object_changes(session, model):
    bpy_env.reset_scene()
    obj = _two_material_cube("Left", location=(-1.5, 0.0, 0.0))
    other = bpy.data.objects.new("Right", obj.data)                       # a linked duplicate
    other.location = (1.5, 0.0, 0.0)
    bpy.context.scene.collection.objects.link(other)
    before = [s.material.name for s in other.material_slots]
    assert obj.data.users == 2
    bpy.context.view_layer.objects.active = obj
    _configure(steps=2, size=64, model=model)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert [s.material.name for s in other.material_slots] == before == ["MatA", "MatB"]
    assert [m.name for m in obj.data.materials] == ["MatA", "MatB"]       # the mesh's own slots unchanged
    assert all(s.link == "OBJECT" and "csd_result" in s.material for s in obj.material_slots)
    np.testing.assert_array_equal(_indices(other), np.arange(6) % 2)


def test_three_runs_replace_by_default_and_keep_variants_on_request(session, model):
    bpy_env.reset_scene()
    obj = _two_material_cube()
    s = _configure(steps=2, size=64, model=model)
    for seed in (1, 2, 3):
        s.seed = seed
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert _result_counts() == {"materials": 2, "images": 1, "previews": 1}   # one result set, one preview
    assert len(obj.csd.results) == 1 and obj.csd.results[0].seed == 3
    assert sorted(sl.material.name for sl in obj.material_slots) == \
        ["CSD a blue striped sphere (MatA)", "CSD a blue striped sphere (MatB)"]        # no .001 clutter
    assert {"MatA", "MatB"} <= set(bpy.data.materials.keys())

    s.keep_previous_results = True
    for seed in (4, 5):
        s.seed = seed
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    assert _result_counts() == {"materials": 6, "images": 3, "previews": 1}
    results = obj.csd.results
    assert [r.seed for r in results] == [3, 4, 5] and [r.applied for r in results] == [False, False, True]
    rec = results[0]
    first = {r.seed: _texture_node(r.slots[0].material).image for r in results}
    assert bpy.ops.csd.result_apply(index=0) == {"FINISHED"}               # Apply switches the slots
    assert [sl.material for sl in obj.material_slots] == [e.material for e in rec.slots]
    assert _texture_node(obj.material_slots[1].material).image == first[3]
    assert [r.applied for r in results] == [True, False, False]
    assert obj["csd_params"] == rec.params_json
    np.testing.assert_array_equal(_indices(obj), np.arange(6) % 2)

    bpy.context.scene.csd.seed = 99
    assert bpy.ops.csd.result_reuse(index=1) == {"FINISHED"}
    assert bpy.context.scene.csd.seed == 4

    assert bpy.ops.csd.result_delete(index=0) == {"FINISHED"}              # the applied one: originals back
    assert [sl.material.name for sl in obj.material_slots] == ["MatA", "MatB"]
    assert _result_counts() == {"materials": 4, "images": 2, "previews": 1}
    assert bpy.ops.csd.result_delete(index=0) == {"FINISHED"}
    assert bpy.ops.csd.result_delete(index=0) == {"FINISHED"}
    assert _result_counts() == {"materials": 0, "images": 0, "previews": 1} and len(obj.csd.results) == 0
    s.keep_previous_results = False


def test_result_at_1024_is_a_packed_8bit_srgb_png_equal_to_the_engine_output(session, model, monkeypatch):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    ops = bpy_env.submodule("operators.texture")
    images = bpy_env.submodule("scene.images")
    seen = {}
    real_apply = ops.apply_texture_result

    def capture(context, request, result):
        seen["texture"] = np.array(result.arrays["texture"], dtype=np.float32)
        return real_apply(context, request, result)

    monkeypatch.setattr(ops, "apply_texture_result", capture)
    _configure(steps=2, size=1024, model=model)
    assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    image = _texture_node(obj.material_slots[0].material).image
    packed = image.packed_file
    assert packed is not None and bytes(packed.data[:8]) == b"\x89PNG\r\n\x1a\n"
    data = bytes(packed.data)
    bit_depth, colour_type = data[24], data[25]                           # IHDR
    print(f"packed PNG {packed.size / 1e6:.2f} MB, depth {bit_depth}, colour type {colour_type}")
    assert bit_depth == 8 and packed.size <= 4 * 1024 * 1024
    assert tuple(image.size) == (1024, 1024) and not image.is_float
    assert image.colorspace_settings.name == "sRGB"
    engine = seen["texture"]
    stored = images.array_from_image(image)
    assert engine.shape[:2] == (1024, 1024) and engine[..., :3].std() > 0.01
    diff = np.abs(stored[..., :3] - engine[..., :3]).max()
    print(f"max |stored - engine| = {diff * 255:.3f}/255")
    assert diff <= 1 / 255


def test_sixteen_bit_option_stores_a_16bit_png(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    s = _configure(steps=2, size=64, model=model)
    s.texture_depth = "16"
    try:
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    finally:
        s.texture_depth = "8"
    image = _texture_node(obj.material_slots[0].material).image
    data = bytes(image.packed_file.data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[24] == 16
    assert not any(i.name.endswith("(writing)") for i in bpy.data.images)


def test_texture_selected_objects_one_progress_and_escape_after_the_first(session, model):
    bpy_env.reset_scene()
    objs = []
    for i, x in enumerate((-3.0, 0.0, 3.0)):
        bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, location=(x, 0.0, 0.0))
        o = bpy.context.active_object
        o.name = f"Ball{i}"
        o.data.materials.append(bpy.data.materials.new(f"Own{i}"))
        objs.append(o)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objs[0]
    objs[2].csd.prompt = "a red plain sphere"                             # its own prompt
    _configure(steps=2, size=64, model=model)

    seen = []                                                              # (target, batch i/n, fraction)
    stop = {"flag": False}

    def sample():
        end = time.monotonic() + 120
        while not stop["flag"] and time.monotonic() < end:
            job = session.job
            if job is not None:
                seen.append((job.target, job.batch_index, job.batch_total, job.fraction))
            time.sleep(0.005)

    import threading
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert bpy.ops.csd.texture_selected() == {"FINISHED"}
    finally:
        stop["flag"] = True
        sampler.join()
    assert all(len(o.csd.results) == 1 and o.csd.results[0].applied for o in objs)
    prompts = [o.csd.results[0].prompt for o in objs]
    assert prompts == ["a blue striped sphere", "a blue striped sphere", "a red plain sphere"]
    assert {t for t, *_ in seen} <= {o.name for o in objs} and {n for *_, n, _ in seen} == {3}
    fractions = [f for *_, f in seen]
    assert fractions == sorted(fractions), "the batch progress went backwards"

    # now Esc (cancel) after the first result: the other two stay as they were
    for o in objs:
        o.csd.prompt = ""
    _configure(steps=400, size=64, model=model)
    state = [(o.name, [s.material.name for s in o.material_slots], len(o.csd.results)) for o in objs]
    second_running = lambda: session.job is not None and session.job.batch_index == 1 \
        and session.job.step >= 1  # noqa: E731
    s = bpy.context.scene.csd
    s.steps = 2                                         # the first job is short, the second long
    helper = bpy_env.when(second_running, lambda: setattr(session.job, "cancel_requested", True))
    ops = bpy_env.submodule("operators.texture")
    orig_request = ops.texture_request

    def long_after_first(context, obj, **kwargs):
        context.scene.csd.steps = 2 if obj == objs[0] else 400
        return orig_request(context, obj, **kwargs)

    ops.texture_request = long_after_first
    try:
        assert bpy.ops.csd.texture_selected() == {"FINISHED"}   # one result applied: one undo step
    finally:
        ops.texture_request = orig_request
    helper.join()
    assert objs[0].csd.results[0].seed == s.seed and len(objs[0].csd.results) == 1
    after = [(o.name, [sl.material.name for sl in o.material_slots], len(o.csd.results)) for o in objs]
    assert after[1:] == state[1:]
    assert session.job is None and session.connected


def test_textures_saved_beside_the_blend_on_request(session, model):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    s = _configure(steps=2, size=64, model=model)
    s.texture_storage = "FILE"
    try:
        with pytest.raises(RuntimeError, match="Save the .blend first"):
            bpy.ops.csd.texture_from_text()                                # nowhere to put it yet
        blend = bpy_env.HOME / "saved" / "scene.blend"
        blend.parent.mkdir(exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        obj = bpy.data.objects[obj.name]
        assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
    finally:
        bpy.context.scene.csd.texture_storage = "PACK"
    image = _texture_node(obj.material_slots[0].material).image
    path = bpy.path.abspath(image.filepath)
    assert image.packed_file is None and image.filepath.startswith("//csd_textures/")
    assert path.endswith(".png") and (blend.parent / "csd_textures").is_dir()
    with open(path, "rb") as f:
        head = f.read(26)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 8
    assert tuple(image.size) == (64, 64)
