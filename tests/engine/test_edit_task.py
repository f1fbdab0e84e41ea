"""The edit task (paper Eq. 11) on the bundled toy prior: parameters, array checks, inputs untouched, sizes,
determinism, cancel, the command line, and (slow) reconstruction PSNR on Spot and the striped-sphere edit."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from edit_stats import layout_correlation, striped_texture, uv_sphere, views_in_family
from paths import REPO

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import EditParams, check_edit_arrays
from engine.errors import CancelledError
from engine.images import decode_png, save_png
from engine.mesh import Mesh, load_mesh, load_texture_image
from engine.priors import load_prior
from engine.tasks.common.turntable import mesh_turntable
from engine.tasks.edit import make_edit_job, pack_edit_result, run_edit

SPOT = REPO / "engine" / "assets" / "meshes" / "spot.obj"
SPOT_TEXTURE = REPO / "engine" / "assets" / "meshes" / "spot_texture.png"


def _sphere(texture: np.ndarray | None = None) -> dict:
    v, f, uv = uv_sphere(rings=12, segments=24)
    return {"vertices": v, "faces": f, "uvs": uv, "texture": striped_texture(64) if texture is None else texture}


def _params(**kw) -> EditParams:
    base = {"target_prompt": "a blue striped sphere", "edit_prompt": "a red striped sphere", "steps": 3,
            "batch_size": 2, "fit_max_steps": 4, "progress_every": 2, "preview_size": 32}
    base.update(kw)
    return EditParams(**base)


def _digest(arrays: dict) -> dict:
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in arrays.items()}


# --- parameters and arrays ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field, code", [
    ({"edit_prompt": "a blue striped sphere"}, "edit_prompt", ErrorCode.BAD_PROMPT),
    ({"edit_prompt": "  A  Blue striped SPHERE "}, "edit_prompt", ErrorCode.BAD_PROMPT),
    ({"target_prompt": ""}, "target_prompt", ErrorCode.BAD_PROMPT),
    ({"edit_prompt": "   "}, "edit_prompt", ErrorCode.BAD_PROMPT),
    ({"strength": 4.5}, "strength", ErrorCode.BAD_REQUEST),
    ({"strength": -0.1}, "strength", ErrorCode.BAD_REQUEST),
    ({"strength": float("nan")}, "strength", ErrorCode.BAD_REQUEST),
    ({"strength": 0.0, "omega2": 0.0}, "strength", ErrorCode.BAD_REQUEST),
    ({"omega2": 9.0}, "omega2", ErrorCode.BAD_REQUEST),
    ({"preserve": -1.0}, "preserve", ErrorCode.BAD_REQUEST),
    ({"fit_psnr": 100.0}, "fit_psnr", ErrorCode.BAD_REQUEST),
    ({"steps": 0}, "steps", ErrorCode.BAD_REQUEST),
    ({"texture_size": 8}, "texture_size", ErrorCode.BAD_REQUEST),
])
def test_bad_parameters_get_specific_codes(change, field, code):
    with pytest.raises(ProtocolError) as info:
        _params(**change).validate()
    assert (info.value.code, info.value.field) == (code, field), info.value


def test_from_dict_requires_both_prompts():
    with pytest.raises(ProtocolError) as info:
        EditParams.from_dict({"target_prompt": "a blue sphere"})
    assert info.value.field == "edit_prompt" and "required" in str(info.value)


def _zero_area_uvs() -> np.ndarray:
    return np.zeros_like(_sphere()["uvs"])


@pytest.mark.parametrize("change, code, field", [
    ({"texture": None}, ErrorCode.NO_TEXTURE, "texture"),
    ({"uvs": None}, ErrorCode.NO_UVS, "uvs"),
    ({"uvs": "shifted"}, ErrorCode.UV_TEXTURE_MISMATCH, "uvs"),
    ({"uvs": "zero"}, ErrorCode.UV_TEXTURE_MISMATCH, "uvs"),
    ({"texture": np.zeros((64, 64, 2), np.float32)}, ErrorCode.BAD_ARRAY, "texture"),
    ({"texture": np.zeros((4, 64, 3), np.float32)}, ErrorCode.BAD_ARRAY, "texture"),
])
def test_bad_arrays_get_specific_codes(change, code, field):
    arrays = _sphere()
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        elif isinstance(value, str):
            arrays[key] = arrays[key] + 1.5 if value == "shifted" else _zero_area_uvs()
        else:
            arrays[key] = value
    for check in (check_edit_arrays, lambda a: make_edit_job(_params(), a)):
        with pytest.raises(ProtocolError) as info:
            check(arrays)
        assert (info.value.code, info.value.field) == (code, field), info.value


def test_spot_uvs_overhanging_the_square_slightly_are_accepted():
    spot = load_mesh(SPOT, up="y")
    assert spot.uvs.min() < 0  # Spot's UVs overhang [0, 1] by ~0.05: real meshes do
    check_edit_arrays({"uvs": spot.uvs, "texture": np.zeros((64, 64, 3), np.float32)})


# --- the run -----------------------------------------------------------------------------------------------

def test_new_texture_keeps_size_channels_alpha_and_uvs_and_inputs_stay_untouched():
    rgba = np.concatenate([striped_texture(96)[:, :80], np.linspace(0, 1, 96 * 80, dtype=np.float32)
                           .reshape(96, 80, 1)], axis=2)
    arrays = _sphere(rgba)
    before = _digest(arrays)
    events = []
    result = run_edit(make_edit_job(_params(), arrays), progress=events.append)
    assert _digest(arrays) == before                     # the caller's arrays are never written
    assert result.texture.shape == (96, 80, 4) and result.texture.dtype == np.float32
    np.testing.assert_array_equal(result.texture[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(result.uvs, arrays["uvs"])
    assert result.texture is not arrays["texture"] and not np.shares_memory(result.texture, arrays["texture"])
    stages = [e.stage for e in events]
    assert stages[0] == "loading" and stages[-1] == "done"
    assert stages.index("fitting") < stages.index("optimising") < stages.index("baking")
    assert all(decode_png(e.preview_png).shape == (32, 32, 3) for e in events if e.preview_png)
    meta, wire = pack_edit_result(result)
    assert meta["stats"]["fit_steps"] == 4 and meta["stats"]["steps_run"] == 3
    assert decode_png(wire["before_after_png"].tobytes()).shape[0] == 2 * 128


def test_same_seed_gives_identical_results_and_another_seed_differs():
    a = run_edit(make_edit_job(_params(seed=3), _sphere()))
    b = run_edit(make_edit_job(_params(seed=3), _sphere()))
    c = run_edit(make_edit_job(_params(seed=4), _sphere()))
    np.testing.assert_array_equal(a.texture, b.texture)
    assert a.stats["texture_sha256"] == b.stats["texture_sha256"]
    assert not np.array_equal(a.texture, c.texture)


@pytest.mark.parametrize("stop_after, said", [(2, "while fitting, at step 2/4"), (6, "at step 2/50")])
def test_cancel_stops_within_one_step_in_either_stage(stop_after, said):
    calls, events = [], []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > stop_after

    with pytest.raises(CancelledError) as info:
        run_edit(make_edit_job(_params(steps=50, fit_max_steps=4, fit_psnr=60.0), _sphere()),
                 progress=events.append, should_stop=stop)
    assert info.value.code == ErrorCode.CANCELLED and said in str(info.value), str(info.value)
    assert len(calls) == stop_after + 1                   # the check before the next step stopped it
    assert not any(e.stage in ("baking", "done") for e in events)


def test_out_of_vocabulary_edit_prompt_names_its_field():
    job = make_edit_job(_params(edit_prompt="a red striped teapot"), _sphere())
    with pytest.raises(ProtocolError) as info:
        run_edit(job)
    assert info.value.code == ErrorCode.BAD_PROMPT and info.value.field == "edit_prompt"


def test_command_line_writes_the_texture_files_and_the_before_after_sheet(tmp_path):
    arrays = _sphere()
    mesh = Mesh(arrays["vertices"], arrays["faces"].astype(np.int64), arrays["uvs"])
    from engine.mesh import export_obj

    export_obj(tmp_path / "in", mesh, arrays["texture"], name="ball", up="z")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "engine", "edit", "--mesh", str(tmp_path / "in" / "ball.obj"), "--up", "z",
         "--texture", str(tmp_path / "in" / "texture.png"), "--target", "a blue striped sphere",
         "--edit", "a red striped sphere", "--out", str(out), "--steps", "2", "--fit-max-steps", "3",
         "--batch-size", "1", "--device", "cpu", "--quiet"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    for name in ("textured.glb", "textured.obj", "texture.png", "turntable.png", "before_after.png", "job.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "job.json").read_text())
    assert record["task"] == "edit" and record["command"].startswith("python -m engine edit")
    assert record["params"]["target_prompt"] == "a blue striped sphere" and record["stats"]["fit_steps"] == 3
    assert load_texture_image(out / "texture.png").shape[:2] == (64, 64)


def test_command_line_without_a_texture_is_one_clear_error(tmp_path):
    arrays = _sphere()
    from engine.mesh import export_obj

    export_obj(tmp_path, Mesh(arrays["vertices"], arrays["faces"].astype(np.int64), arrays["uvs"]),
               arrays["texture"], name="ball", up="z")
    (tmp_path / "ball.mtl").unlink()          # the OBJ now has no material, hence no texture
    run = subprocess.run(
        [sys.executable, "-m", "engine", "edit", "--mesh", str(tmp_path / "ball.obj"), "--target", "a blue sphere",
         "--edit", "a red sphere", "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: [no_texture] texture:"), run.stderr


# --- quality (toy prior, plain image statistics) -------------------------------------------------------------

@pytest.mark.slow
def test_spot_reconstruction_reaches_30_db_and_the_edit_keeps_uvs_and_texture_size():
    spot = load_mesh(SPOT, up="y")
    texture = load_texture_image(SPOT_TEXTURE)
    arrays = {"vertices": spot.vertices, "faces": spot.faces.astype(np.int32), "uvs": spot.uvs, "texture": texture}
    result = run_edit(make_edit_job(EditParams(target_prompt="a blue plain sphere", edit_prompt="a red plain sphere",
                                               steps=5, batch_size=2), arrays), prior=load_prior("toy"))
    assert result.stats["fit_psnr_db"] >= 30.0, result.stats
    assert result.stats["fit_texel_psnr_db"] >= 30.0, result.stats
    assert result.texture.shape == texture.shape
    np.testing.assert_array_equal(result.uvs, spot.uvs)


STRIPE_STEPS = 150


def _striped_edit(omega2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, f, uv = uv_sphere()
    tex = striped_texture(256)
    params = EditParams(target_prompt="a blue striped sphere", edit_prompt="a red striped sphere", omega2=omega2,
                        steps=STRIPE_STEPS, progress_every=STRIPE_STEPS)
    result = run_edit(make_edit_job(params, {"vertices": v, "faces": f, "uvs": uv, "texture": tex}),
                      prior=load_prior("toy"))
    mesh = Mesh(v, f.astype(np.int64), uv)
    return mesh_turntable(mesh, tex, uv, size=128), mesh_turntable(mesh, result.texture, uv, size=128), \
        result.before_after


@pytest.fixture(scope="module")
def striped_runs(tmp_path_factory) -> dict:
    runs = {w2: _striped_edit(w2) for w2 in (1.0, 0.0)}
    out = tmp_path_factory.mktemp("edit")
    for w2, (_, _, sheet) in runs.items():
        save_png(out / f"before_after_omega2_{w2}.png", sheet)
    return runs


@pytest.mark.slow
def test_red_stripes_edited_to_blue_keep_their_layout(striped_runs):
    before, after, _ = striped_runs[1.0]
    blue = views_in_family(after, "blue")
    corr = layout_correlation(before, after)
    assert blue >= 7, f"{blue}/8 views in the blue family"
    assert corr >= 0.7, f"binarised-luminance correlation with the original {corr:.3f}"


@pytest.mark.slow
def test_without_the_edit_prompt_the_layout_is_kept_less(striped_runs):
    with_edit = layout_correlation(*striped_runs[1.0][:2])
    without = layout_correlation(*striped_runs[0.0][:2])
    assert without < with_edit, f"layout correlation ω2 = 0: {without:.3f}, ω2 = 1: {with_edit:.3f}"


# --- geometry (DMTet from the object's signed distance) -----------------------------------------------------

def _red_cube() -> dict:
    import trimesh

    from engine.mesh import ensure_uvs

    box = trimesh.creation.box()
    mesh = Mesh(box.vertices.astype(np.float32), box.faces.astype(np.int64))
    texture = np.zeros((64, 64, 3), np.float32)
    texture[...] = (0.85, 0.08, 0.08)
    return {"vertices": mesh.vertices, "faces": mesh.faces.astype(np.int32), "uvs": ensure_uvs(mesh)[0],
            "texture": texture}


def test_geometry_edit_returns_a_new_mesh_with_its_own_uvs_leaves_the_input_alone_and_repeats():
    arrays = _red_cube()
    before = _digest(arrays)
    params = _params(target_prompt="a red sphere", edit_prompt="a red cube", geometry=True, steps=2, fit_max_steps=2)
    result = run_edit(make_edit_job(params, arrays))
    again = run_edit(make_edit_job(params, arrays))
    np.testing.assert_array_equal(result.mesh.vertices, again.mesh.vertices)
    np.testing.assert_array_equal(result.texture, again.texture)
    assert _digest(arrays) == before and result.geometry
    assert result.uvs.shape == (len(result.mesh.faces), 3, 2) and result.texture.shape == (64, 64, 3)
    meta, wire = pack_edit_result(result)
    assert meta["geometry"] and wire["faces"].dtype == np.int32 and wire["vertices"].shape[1] == 3
    assert wire["faces"].max() < len(wire["vertices"])


@pytest.mark.slow
def test_geometry_edit_moves_a_cube_towards_a_sphere_as_one_connected_mesh():
    import trimesh
    from edit_stats import silhouette_iou, silhouettes

    arrays = _red_cube()
    params = EditParams(target_prompt="a red sphere", edit_prompt="a red cube", geometry=True, steps=40,
                        preserve=0.0, fit_max_steps=100, progress_every=40)
    result = run_edit(make_edit_job(params, arrays), prior=load_prior("toy"))
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)   # the unit cube's inscribed sphere
    reference = silhouettes(sphere.vertices, sphere.faces)
    iou_in = silhouette_iou(silhouettes(arrays["vertices"], arrays["faces"]), reference)
    iou_out = silhouette_iou(silhouettes(result.mesh.vertices, result.mesh.faces), reference)
    assert iou_out > iou_in, f"8-view silhouette IoU with a sphere: input {iou_in:.3f}, edited {iou_out:.3f}"
    parts = trimesh.Trimesh(result.mesh.vertices, result.mesh.faces, process=True).split(only_watertight=False)
    assert len(parts) == 1, f"{len(parts)} connected components"
