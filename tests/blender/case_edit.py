"""Edit selected object in headless Blender against a real engine subprocess (CPU, bundled toy prior): the
operator makes a new image and material from the object's Base Color image and active UV map, leaves the original
image's pixels byte-identical and its material in the file, one undo restores the original assignment, and an
object without an image texture or without UVs is refused with a message and nothing created."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import dataclasses

import bpy
import numpy as np
import pytest

from case_real_engine import ext, session  # noqa: F401  (fixtures: the extension, a local CPU engine)


@pytest.fixture(scope="module", autouse=True)
def few_fit_steps(session):
    """The reconstruction is checked by the engine's tests; a few fit steps keep this case short."""
    assert "edit" in session.hello.tasks
    job_params = bpy_env.submodule("props.job_params")
    original = job_params.edit_params
    job_params.edit_params = lambda *a, **k: dataclasses.replace(original(*a, **k), fit_max_steps=3)
    yield
    job_params.edit_params = original


def _striped_image(name="Stripes", size=32):
    img = bpy.data.images.new(name, width=size, height=size, alpha=True)
    rows = np.where((np.arange(size) // 4 % 2 == 0)[:, None], [0.8, 0.05, 0.05, 1.0], [0.9, 0.9, 0.9, 1.0])
    img.pixels.foreach_set(np.repeat(rows[:, None, :], size, axis=1).astype(np.float32).ravel())
    img.pack()
    return img


def _textured_sphere(with_image=True, with_uvs=True):
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.0)
    obj = bpy.context.active_object
    if not with_uvs:
        while obj.data.uv_layers:
            obj.data.uv_layers.remove(obj.data.uv_layers[0])
    if with_image:
        bpy_env.paint(obj, _striped_image())
    else:
        mat = bpy.data.materials.new("Painted")
        mat.use_nodes = True
        obj.data.materials.append(mat)
    return obj


def _pixels(img) -> np.ndarray:
    out = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(out)
    return out


def _configure():
    s = bpy.context.scene.csd_edit
    s.target_prompt, s.edit_prompt = "a blue striped sphere", "a red striped sphere"
    s.strength, s.preserve, s.geometry, s.quality, s.steps, s.seed = 1.0, 0.5, False, "fast", 2, 1
    bpy.context.scene.csd.model = ""
    bpy.context.scene.csd.progress_every = 1


def test_new_image_and_material_originals_untouched_and_one_undo_restores_the_assignment(session):
    bpy_env.reset_scene()
    obj = _textured_sphere()
    name = obj.name
    original_image = obj.active_material.node_tree.nodes["Image Texture"].image
    image_name, original_pixels = original_image.name, _pixels(original_image).tobytes()
    _configure()
    ops = bpy_env.submodule("operators.edit")
    assert {"REGISTER", "UNDO"} <= ops.CSD_OT_edit_object.bl_options
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo_push(message="before the job")
        before = bpy_env.counts()
        assert bpy.ops.csd.edit_object() == {"FINISHED"}
        bpy.ops.ed.undo_push(message=ops.CSD_OT_edit_object.bl_label)   # what Blender does after an UNDO op
        obj = bpy.data.objects[name]
        mat = obj.material_slots[0].material
        assert mat.name != "Painted" and mat["csd_source"].name == "Painted"
        image = mat.node_tree.nodes["CSD Texture"].image
        assert image.name != image_name and tuple(image.size) == (32, 32)
        assert mat.node_tree.nodes["CSD UV Map"].uv_map == obj.data.uv_layers.active.name
        assert obj.csd.results[-1].task == "edit" and "a blue striped sphere" in obj["csd_params"]
        assert "Painted" in bpy.data.materials and image_name in bpy.data.images
        assert _pixels(bpy.data.images[image_name]).tobytes() == original_pixels
        assert not np.array_equal(_pixels(image), _pixels(bpy.data.images[image_name]))
        after = bpy_env.counts()
        assert after["materials"] == before["materials"] + 1 and after["images"] >= before["images"] + 1
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.data.objects[name].material_slots[0].material.name == "Painted"
    assert _pixels(bpy.data.images[image_name]).tobytes() == original_pixels


@pytest.mark.parametrize("kind, message", [("image", "no image texture"), ("uvs", "no UV map")])
def test_an_object_without_image_or_uvs_is_refused_and_nothing_is_created(session, kind, message):
    bpy_env.reset_scene()
    _textured_sphere(with_image=kind != "image", with_uvs=kind != "uvs")
    _configure()
    before = bpy_env.counts()
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.csd.edit_object()
    assert bpy_env.counts() == before and session.job is None


def test_a_geometry_edit_adds_a_new_object_and_leaves_the_original_alone(session):
    bpy_env.reset_scene()
    obj = _textured_sphere()
    name, verts_before = obj.name, len(obj.data.vertices)
    _configure()
    bpy.context.scene.csd_edit.geometry = True
    objects = set(bpy.data.objects.keys())
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo_push(message="before the job")
        assert bpy.ops.csd.edit_object() == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Edit Object")
        new = [bpy.data.objects[n] for n in set(bpy.data.objects.keys()) - objects]
        assert len(new) == 1 and new[0].name.startswith(name)
        assert len(new[0].data.polygons) > 0 and new[0].data.uv_layers
        assert new[0].material_slots[0].material.node_tree.nodes["CSD Texture"].image.size[0] == 32
        original = bpy.data.objects[name]
        assert len(original.data.vertices) == verts_before and original.material_slots[0].material.name == "Painted"
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert set(bpy.data.objects.keys()) == objects


def test_the_panel_names_the_image_it_edits_or_why_it_cannot(ext):
    from case_panels import _draw, _labels

    panels = bpy_env.panels()
    bpy_env.reset_scene()
    _textured_sphere()
    s = bpy.context.scene.csd_edit
    s.target_prompt, s.edit_prompt = "a blue striped sphere", "a red striped teapot"
    bpy.context.scene.csd.model = "toy"
    calls = _draw(panels.CSD_PT_edit)
    labels = _labels(calls)
    assert any(t.startswith("Edits Stripes (32x32) on UVMap") for t in labels), labels
    assert any("teapot" in t for t in labels), labels            # a word the toy model does not know
    assert ("operator", "csd.edit_object", None, False) in calls
    bpy_env.reset_scene()
    _textured_sphere(with_image=False)
    labels = _labels(_draw(panels.CSD_PT_edit))
    assert any("no image texture" in t and "Generate texture from text" in t for t in labels), labels
