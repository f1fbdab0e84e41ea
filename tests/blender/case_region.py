"""Region edit in headless Blender against a real engine (CPU, toy prior) — issue 23's acceptance: the top faces of
a textured cube are selected, "a red plain cube" → "a blue plain cube" with Selected Faces Only: the region turns
blue in ≥ 6 of the 8 turntable views that see it, every texel beyond the border is bit-identical to the input
image, and one undo restores the previous assignment. Also: the mask follows a vertex group, and a region that
selects nothing is refused before anything is sent."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import json
import subprocess
import sys

import bpy
import numpy as np
import pytest
from region_stats import beyond_border

from case_real_engine import ext, model, session  # noqa: F401  (fixtures: the extension, a local CPU engine)

BORDER = 4     # the engine's default mask_border
SIZE = 64


def _red_cube():
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    obj = bpy.context.active_object
    img = bpy.data.images.new("Red", width=SIZE, height=SIZE, alpha=True)
    rng = np.random.default_rng(0)
    rgb = np.clip(np.array([0.85, 0.08, 0.08]) + rng.uniform(-0.04, 0.04, (SIZE, SIZE, 3)), 0, 1)
    img.pixels.foreach_set(np.concatenate([rgb, np.ones((SIZE, SIZE, 1))], 2).astype(np.float32).ravel())
    img.pack()
    bpy_env.paint(obj, img)
    for p in obj.data.polygons:
        p.select = p.normal.z > 0.9
    return obj


def _sent(obj):
    """What the operator sends: the mesh arrays and the face mask (the add-on's own functions)."""
    mesh = bpy_env.submodule("scene.mesh")
    info = mesh.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get(), uv_name=obj.data.uv_layers.active.name)
    return info, bpy_env.submodule("scene.region").face_mask(obj, info, "SELECTION")


def _configure(model_name, steps=60):
    s = bpy.context.scene.csd_edit
    s.target_prompt, s.edit_prompt = "a blue plain cube", "a red plain cube"
    s.strength, s.preserve, s.geometry, s.quality, s.steps, s.seed = 1.0, 0.35, False, "fast", steps, 0
    s.region.enabled, s.region.source = True, "SELECTION"
    bpy.context.scene.csd.model = model_name
    bpy.context.scene.csd.progress_every = 30


BLUE_VIEWS = """
import json, sys, numpy as np
sys.path.insert(0, {fixtures!r})
from region_stats import region_pixels
from texture_stats import in_family, mean_hue
from engine.mesh import Mesh
from engine.tasks.common.turntable import mesh_turntable
d = np.load({npz!r})
views = mesh_turntable(Mesh(d["vertices"], d["faces"].astype(np.int64), d["uvs"]), d["texture"], d["uvs"], size=128)
seen = region_pixels(d["vertices"], d["faces"], d["mask"])
print(json.dumps([bool(in_family(*mean_hue(v, m), "blue")) for v, m in zip(views, seen) if m.sum() >= 20]))
"""


def test_top_faces_turn_blue_the_rest_stays_bit_for_bit_and_one_undo_restores(session, model):
    bpy_env.reset_scene()
    obj = _red_cube()
    name = obj.name
    original = bpy_env.submodule("scene.images").array_from_image(bpy.data.images["Red"])
    info, mask = _sent(obj)
    assert mask.sum() == 2 and len(mask) == 12                    # the top quad's two triangles
    _configure(model)
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo_push(message="before the job")
        assert bpy.ops.csd.edit_object() == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Edit Object")
        obj = bpy.data.objects[name]
        image = obj.material_slots[0].material.node_tree.nodes["CSD Texture"].image
        edited = bpy_env.submodule("scene.images").array_from_image(image)
        kept = beyond_border(info.uvs, mask, (SIZE, SIZE), BORDER)
        assert kept.sum() > 0.5 * kept.size
        np.testing.assert_array_equal(edited[kept], original[kept])         # bit-identical outside the border
        npz = str(bpy_env.HOME / "region.npz")
        np.savez(npz, vertices=info.vertices, faces=info.faces, uvs=info.uvs, texture=edited[..., :3], mask=mask)
        script = BLUE_VIEWS.format(fixtures=str(bpy_env.ROOT / "tests" / "fixtures"), npz=npz)
        run = subprocess.run([sys.executable, "-c", script], cwd=bpy_env.ROOT, capture_output=True, text=True,
                             timeout=300, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        blue = json.loads(run.stdout.strip().splitlines()[-1])
        assert len(blue) >= 6 and sum(blue) >= 6, f"{sum(blue)} of {len(blue)} views that see the top are blue"
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.data.objects[name].material_slots[0].material.name == "Painted"


def test_a_vertex_group_names_the_region_and_an_empty_selection_is_refused(session, model):
    bpy_env.reset_scene()
    obj = _red_cube()
    group = obj.vertex_groups.new(name="Lid")
    group.add([v.index for v in obj.data.vertices if v.co.z > 0.4], 1.0, "REPLACE")
    info, _ = _sent(obj)
    region = bpy_env.submodule("scene.region")
    by_group = region.face_mask(obj, info, "VERTEX_GROUP", vertex_group="Lid")
    assert by_group.sum() == 2
    for p in obj.data.polygons:
        p.select = False
    _configure(model, steps=2)
    before = bpy_env.counts()
    with pytest.raises(RuntimeError, match="no face is selected"):
        bpy.ops.csd.edit_object()
    assert bpy_env.counts() == before and session.job is None
