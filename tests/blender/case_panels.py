"""Panel draw tests (headless bpy, no engine): the widgets say what will happen.

A recording layout stands in for UILayout and keeps every widget with the label Blender would show, so the
tests check: resolved preset values beside "Auto" fields, the target object named, rig fields only in rig
mode, no two fields with the same label, the toy model's words, the prompt limit; and the Results list.
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

from collections import Counter
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

ICONS = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()
RIG_FIELDS = {"camera_collection", "rig_cameras", "rig_elevation", "rig_distance", "rig_lens"}


class Recorder:
    """Records widgets as (kind, name, shown label); checks that properties, operators and icons exist."""

    def __init__(self, calls: list):
        self.calls = calls
        self.use_property_split = False
        self.scale_y = 1.0
        self.enabled = True
        self.alert = False

    def _child(self, *args, **kwargs):
        return Recorder(self.calls)

    row = column = box = split = _child

    def prop(self, data, name, text=None, expand=False, **kwargs):
        prop = data.bl_rna.properties.get(name)
        assert prop is not None, f"{type(data).__name__} has no property {name!r}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        shown = prop.name if text is None else text
        self.calls.append(("prop", name, shown, expand))

    def prop_search(self, data, name, search_data, search_name, text=None, **kwargs):
        assert search_name in search_data.bl_rna.properties, search_name
        self.prop(data, name, text=text, **kwargs)

    def prop_enum(self, data, name, value, text=None, **kwargs):
        prop = data.bl_rna.properties.get(name)
        assert prop is not None and value in prop.enum_items.keys(), (name, value)
        self.calls.append(("enum", name, prop.enum_items[value].name if text is None else text, True))

    def separator(self, **kwargs):
        pass

    def operator(self, idname, text=None, **kwargs):
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), f"no operator {idname}"
        assert kwargs.get("icon", "NONE") in ICONS, kwargs
        self.calls.append(("operator", idname, text, False))
        return SimpleNamespace()

    def label(self, text="", icon="NONE", icon_value=0):
        assert icon in ICONS, icon
        self.calls.append(("label", text, icon_value, self.alert))

    def progress(self, factor=0.0, text="", type="BAR"):
        self.calls.append(("progress", text, factor, False))

    def template_icon(self, icon_value=0, scale=1.0):
        self.calls.append(("icon", icon_value, scale, False))

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, rows=5):
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.calls.append(("list", list_type, len(getattr(data, prop)), False))


def _draw(panel_cls) -> list:
    calls: list = []
    panel_cls.draw(SimpleNamespace(layout=Recorder(calls)), bpy.context)
    return calls


def _labels(calls) -> list[str]:
    return [c[1] for c in calls if c[0] == "label"]


def _props(calls) -> list[str]:
    return [c[1] for c in calls if c[0] == "prop"]


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture
def scene(ext):
    bpy_env.reset_scene()
    obj = bpy_env.add_suzanne()
    s = bpy.context.scene.csd
    s.prompt, s.model, s.quality, s.steps, s.texture_size = "a red striped cube", "toy", "fast", 0, 0
    s.camera_mode = "AUTO"
    return SimpleNamespace(obj=obj, settings=s, panels=bpy_env.panels())


def test_resolved_values_and_the_target_are_shown(scene):
    calls = _draw(scene.panels.CSD_PT_texture)
    labels = _labels(calls)
    assert "Auto: 150 (toy fast)" in labels and "Auto: 256x256" in labels
    assert any(t.startswith("Target: Suzanne (500 faces, 1 material slot)") for t in labels), labels
    scene.settings.quality = "best"
    scene.settings.steps = 40
    labels = _labels(_draw(scene.panels.CSD_PT_texture))
    assert "Auto: 1024x1024" in labels and "Preset: 600 (toy best)" in labels   # steps set by hand
    scene.settings.model = "runwayml/stable-diffusion-v1-5"
    assert "Auto: 2048x2048" in _labels(_draw(scene.panels.CSD_PT_texture))


def test_rig_fields_only_in_rig_mode_and_no_duplicate_labels(scene):
    orbit = _draw(scene.panels.CSD_PT_texture)
    assert not RIG_FIELDS & set(_props(orbit)) and "csd.add_camera_rig" not in [c[1] for c in orbit]
    scene.settings.camera_mode = "COLLECTION"
    rig = _draw(scene.panels.CSD_PT_texture)
    assert RIG_FIELDS <= set(_props(rig))
    for calls in (orbit, rig):
        shown = [c[2] for c in calls if c[0] == "prop" and c[2] and not c[3]]
        dupes = [k for k, n in Counter(shown).items() if n > 1]
        assert not dupes, f"two fields labelled {dupes}"


def test_toy_words_are_listed_and_unknown_words_flagged(scene):
    labels = _labels(_draw(scene.panels.CSD_PT_texture))
    assert any(t.startswith("Colours: black, blue") for t in labels)
    assert any(t.startswith("Shapes: capsule, cone, cube") for t in labels)
    scene.settings.prompt = "a shiny red cube"
    calls = _draw(scene.panels.CSD_PT_texture)
    assert ("label", "Unknown to the toy model: shiny", 0, True) in calls
    scene.settings.model = "runwayml/stable-diffusion-v1-5"
    labels = _labels(_draw(scene.panels.CSD_PT_texture))
    assert not any(t.startswith("Colours:") for t in labels) and "16/1000 characters" in labels


def test_prompt_over_the_limit_is_kept_whole_and_refused_with_a_message(scene):
    long = "a red striped cube " * 60                                      # 1140 characters
    scene.settings.prompt = long
    assert scene.settings.prompt == long                                   # not cut
    calls = _draw(scene.panels.CSD_PT_texture)
    assert ("label", f"Prompt: {len(long)}/1000 characters, too long", 0, True) in calls
    with pytest.raises(RuntimeError, match=f"prompt is {len(long)} characters; the limit is 1000"):
        bpy.ops.csd.texture_from_text()


def test_results_list_draws_each_result(scene):
    apply_result = bpy_env.submodule("scene.apply_result")
    obj = scene.obj
    info = bpy_env.submodule("scene.mesh").mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    texture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    params = '{"model": "toy", "prompt": "a red plain cube", "seed": 5, "steps": 7, "task": "texture"}'
    for _ in range(2):
        apply_result.apply_texture(obj, info, texture, None, {"params": {"steps": 7}}, params,
                                   options=apply_result.StoreOptions(keep_previous=True))
    calls = _draw(scene.panels.CSD_PT_results)
    assert ("list", "CSD_UL_results", 2, False) in calls
    assert {"csd.result_apply", "csd.result_reuse", "csd.result_delete"} <= {c[1] for c in calls}
    rows: list = []
    ul = scene.panels.CSD_UL_results
    for i, item in enumerate(obj.csd.results):
        ul.draw_item(None, bpy.context, Recorder(rows), obj.csd, item, 0, obj.csd, "active_result", i)
    texts = [c for c in rows if c[0] == "label" and c[1]]
    assert len(texts) == 2 and all("a red plain cube" in t[1] and "seed 5" in t[1] and "7 steps" in t[1]
                                   and "toy" in t[1] for t in texts)
    # the thumbnail is the result image's preview (its icon id is 0 in headless Blender, which draws no icons)
    assert all(item.image is not None and item.image.preview is not None for item in obj.csd.results)
    assert all(t[2] == item.image.preview.icon_id for t, item in zip(texts, obj.csd.results))
