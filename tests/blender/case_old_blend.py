"""A .blend saved by an older add-on (tests/blender/data/old_results.blend, see make_old_results.py there) opens
with this one and keeps its Results list, its scene settings and the result datablocks (headless bpy)."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import bpy
import pytest

OLD_BLEND = bpy_env.ROOT / "tests" / "blender" / "data" / "old_results.blend"


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


def test_old_results_list_survives(ext):
    bpy.ops.wm.open_mainfile(filepath=str(OLD_BLEND))
    obj = bpy.data.objects["OldCube"]
    results = obj.csd.results
    assert [(r.name, r.prompt, r.seed, r.task, r.steps, r.texture_size) for r in results] == [
        ("a red brick wall", "a red brick wall", 11, "texture", 2, 64),
        ("a blue striped cube", "a blue striped cube", 22, "texture", 2, 64)]
    assert [r.applied for r in results] == [False, True]
    for r in results:
        assert r.result_id and r.image is not None and r.image.name == f"CSD {r.prompt}"
        assert tuple(r.image.size) == (64, 64) and r.image.packed_file is not None
        assert [s.material.name for s in r.slots] == [f"CSD {r.prompt} (MatA)", f"CSD {r.prompt} (MatB)"]
        assert '"prompt"' in r.params_json and r.resolved_json
    assert [s.material for s in obj.material_slots] == [s.material for s in results[1].slots]
    s = bpy.context.scene.csd
    assert (s.prompt, s.seed, s.steps, s.keep_previous_results) == ("a blue striped cube", 22, 2, True)


def test_old_results_still_apply_and_reuse(ext):
    bpy.ops.wm.open_mainfile(filepath=str(OLD_BLEND))
    obj = bpy.data.objects["OldCube"]
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.csd.result_apply(index=0) == {"FINISHED"}
    assert [r.applied for r in obj.csd.results] == [True, False]
    assert [s.material.name for s in obj.material_slots] == ["CSD a red brick wall (MatA)",
                                                             "CSD a red brick wall (MatB)"]
    assert bpy.ops.csd.result_reuse(index=0) == {"FINISHED"}
    assert (bpy.context.scene.csd.prompt, bpy.context.scene.csd.seed) == ("a red brick wall", 11)
