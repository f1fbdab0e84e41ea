"""Writes old_results.blend: a two-material cube with two texture results (one applied) from the fake engine.

Run once with the add-on as it was before the issue-19 restructure (commit 4743bdf), from the repository root:
    PYTHONPATH=tests/blender:tests/fixtures python tests/blender/data/make_old_results.py
The file is committed; case_old_blend.py opens it with the current add-on and checks the Results list.
Only public operators and the saved property names are used, so the script also runs with later add-ons.
"""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

from pathlib import Path

import bpy
import numpy as np

from fake_zmq_engine import FakeEngine

OUT = Path(__file__).resolve().parent / "old_results.blend"


def main() -> None:
    bpy_env.install()
    bpy_env.reset_scene()
    bpy.ops.mesh.primitive_cube_add(size=1.5)
    obj = bpy.context.active_object
    obj.name = "OldCube"
    for name in ("MatA", "MatB"):
        obj.data.materials.append(bpy.data.materials.new(name))
    obj.data.polygons.foreach_set("material_index", np.arange(len(obj.data.polygons), dtype=np.int32) % 2)
    obj.data.update()
    with FakeEngine(step_s=0.0) as fake:
        prefs = bpy_env.preferences()
        prefs.engine_mode, prefs.endpoint, prefs.token, prefs.key_folder = "REMOTE", fake.endpoint, fake.token, ""
        assert bpy.ops.csd.engine_start() == {"FINISHED"}
        s = bpy.context.scene.csd
        s.steps, s.texture_size, s.use_random_seed, s.keep_previous_results = 2, 64, False, True
        for prompt, seed in (("a red brick wall", 11), ("a blue striped cube", 22)):
            s.prompt, s.seed = prompt, seed
            assert bpy.ops.csd.texture_from_text() == {"FINISHED"}
        assert bpy.ops.csd.engine_stop() == {"FINISHED"}
    for image in [i for i in bpy.data.images if i.name.startswith("CSD Preview")]:
        bpy.data.images.remove(image)                      # previews are not results; keep the file small
    bpy.ops.wm.save_as_mainfile(filepath=str(OUT), compress=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes):",
          [(r.name, r.prompt, r.seed, r.applied, r.image.name) for r in obj.csd.results])


if __name__ == "__main__":
    main()
