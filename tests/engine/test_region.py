"""Region jobs (issue 23): a face or texel mask restricts texture and edit jobs to part of an object; every texel
beyond the soft border comes back bit-identical. Protocol checks, the server's array checks, the tasks on the toy
prior, the command line (`--mask`) and batch lines (the mask file's bytes are part of the job id)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from paths import REPO
from region_stats import beyond_border, region_pixels, textured_cube
from texture_stats import in_family, mean_hue

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import EditParams, TextureParams, check_mask_arrays
from engine.mesh import Mesh
from engine.priors import load_prior
from engine.serve.arrays import check_arrays, from_numpy
from engine.tasks.common.turntable import mesh_turntable
from engine.tasks.edit import make_edit_job, run_edit
from engine.tasks.texture import make_texture_job, run_texture

BORDER = 4


def _edit(**kw) -> EditParams:
    base = {"target_prompt": "a blue plain cube", "edit_prompt": "a red plain cube", "steps": 2, "batch_size": 1,
            "fit_max_steps": 2, "progress_every": 2, "preview_size": 32}
    return EditParams(**{**base, **kw})


# --- the protocol's checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field, code", [
    ({"face_mask": np.zeros(12, np.uint8)}, "face_mask", ErrorCode.BAD_MASK),
    ({"face_mask": np.full(12, 2, np.uint8)}, "face_mask", ErrorCode.BAD_MASK),
    ({"texel_mask": np.ones((64, 64), np.float32)}, "texel_mask", ErrorCode.BAD_MASK),        # both masks
    ({"face_mask": None, "texel_mask": np.ones((32, 64), np.float32)}, "texel_mask", ErrorCode.BAD_MASK),
    ({"face_mask": None, "texel_mask": np.zeros((64, 64), np.float32)}, "texel_mask", ErrorCode.BAD_MASK),
    ({"face_mask": None, "texel_mask": np.ones((64, 64), np.float32), "uvs": None}, "texel_mask", ErrorCode.NO_UVS),
])
def test_bad_masks_get_their_own_code_and_name_the_array(change, field, code):
    arrays = textured_cube()
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with pytest.raises(ProtocolError) as info:
        check_mask_arrays(arrays, arrays["texture"].shape)
    assert (info.value.code, info.value.field) == (code, field), info.value


def test_a_region_with_geometry_or_another_texture_size_is_refused_before_any_work():
    with pytest.raises(ProtocolError) as info:
        make_edit_job(_edit(geometry=True), textured_cube())
    assert info.value.code == ErrorCode.BAD_MASK and "geometry" in str(info.value)
    with pytest.raises(ProtocolError) as info:
        make_edit_job(_edit(texture_size=128), textured_cube())
    assert info.value.field == "texture_size"
    with pytest.raises(ProtocolError) as info:     # an input texture only means something with a region
        arrays = textured_cube()
        arrays.pop("face_mask")
        make_texture_job(TextureParams(prompt="a blue plain cube"), arrays)
    assert info.value.field == "texture"


def test_the_server_checks_mask_arrays_at_the_door():
    cube = textured_cube()
    wire = {k: from_numpy(cube[k]) for k in ("vertices", "faces", "uvs", "texture")}
    ok = check_arrays("edit", {**wire, "face_mask": from_numpy(cube["face_mask"])})
    assert ok["face_mask"].dtype == np.uint8 and ok["face_mask"].sum() == 2
    with pytest.raises(ProtocolError) as info:
        check_arrays("edit", {**wire, "face_mask": from_numpy(np.full(12, 3, np.uint8))})
    assert (info.value.code, info.value.field) == (ErrorCode.BAD_MASK, "face_mask")
    with pytest.raises(ProtocolError) as info:
        check_arrays("texture", {**wire, "face_mask": from_numpy(np.ones(11, np.uint8))})
    assert info.value.code == ErrorCode.BAD_ARRAY and "along F" in str(info.value)
    with pytest.raises(ProtocolError) as info:
        check_arrays("texture", {**wire, "texel_mask": from_numpy(np.full((64, 64), 1.5, np.float32))})
    assert info.value.code == ErrorCode.BAD_MASK


# --- the tasks ---------------------------------------------------------------------------------------------

def _kept(arrays: dict) -> np.ndarray:
    return beyond_border(arrays["uvs"], arrays["face_mask"], arrays["texture"].shape[:2], BORDER)


def test_edit_region_changes_texels_only_within_the_border_and_keeps_alpha_bit_for_bit():
    arrays = textured_cube()
    alpha = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64, 1)
    arrays["texture"] = np.concatenate([arrays["texture"], alpha], axis=2)
    sent = {k: v.copy() for k, v in arrays.items()}
    result = run_edit(make_edit_job(_edit(steps=3), arrays))
    kept = _kept(arrays)
    assert kept.sum() > 0.6 * kept.size
    np.testing.assert_array_equal(result.texture[kept], sent["texture"][kept])     # bit-identical
    np.testing.assert_array_equal(result.texture[..., 3], sent["texture"][..., 3])
    assert not np.array_equal(result.texture[~kept], sent["texture"][~kept])       # the region did change
    for k, value in sent.items():
        np.testing.assert_array_equal(arrays[k], value)                          # inputs untouched
    assert result.stats["region_texels"] > 0 and result.stats["kept_texels"] >= kept.sum()


def test_texture_region_on_a_textured_object_keeps_the_rest_and_without_a_texture_is_transparent_outside():
    arrays = textured_cube()
    params = TextureParams(prompt="a blue plain cube", steps=2, batch_size=1, progress_every=2, preview_size=32)
    result = run_texture(make_texture_job(params, arrays))
    kept = _kept(arrays)
    assert result.texture.shape == (64, 64, 3) and not result.unwrapped
    np.testing.assert_array_equal(result.texture[kept], arrays["texture"][kept])
    arrays.pop("texture")
    bare = run_texture(make_texture_job(params, arrays))
    size = bare.texture.shape[0]
    assert bare.texture.shape == (size, size, 4)
    far = beyond_border(arrays["uvs"], arrays["face_mask"], (size, size), BORDER)
    assert np.all(bare.texture[far] == 0.0)                                          # exactly (0, 0, 0, 0)
    assert bare.texture[~far][:, 3].max() == 1.0


@pytest.mark.slow
def test_top_faces_of_a_red_cube_turn_blue_and_nothing_else_changes():
    """Issue 23 acceptance (engine side): the region turns blue in >= 6 of 8 views that see it; every texel
    beyond the border is bit-identical to the input."""
    arrays = textured_cube()
    params = EditParams(target_prompt="a blue plain cube", edit_prompt="a red plain cube", steps=60,
                        fit_max_steps=200, progress_every=60)
    result = run_edit(make_edit_job(params, arrays), prior=load_prior("toy"))
    kept = _kept(arrays)
    np.testing.assert_array_equal(result.texture[kept], arrays["texture"][kept])
    views = mesh_turntable(Mesh(arrays["vertices"], arrays["faces"].astype(np.int64), arrays["uvs"]),
                           result.texture, arrays["uvs"], size=128)
    seen = region_pixels(arrays["vertices"], arrays["faces"], arrays["face_mask"])
    blue = [in_family(*mean_hue(v, m), "blue") for v, m in zip(views, seen) if m.sum() >= 20]
    assert len(blue) >= 6 and sum(blue) >= 6, f"{sum(blue)} of {len(blue)} views that see the top are blue"
    not_top = ~seen & (np.abs(views - 1.0).max(-1) > 0.02)
    red = [in_family(*mean_hue(v, m), "red") for v, m in zip(views, not_top)]
    assert all(red), "the sides stay red"


# --- command line and batch --------------------------------------------------------------------------------

def _cube_files(tmp_path) -> dict:
    from engine.mesh import export_obj

    arrays = textured_cube()
    export_obj(tmp_path, Mesh(arrays["vertices"], arrays["faces"].astype(np.int64), arrays["uvs"]),
               arrays["texture"], name="cube", up="z")
    np.save(tmp_path / "top.npy", arrays["face_mask"])
    (tmp_path / "top.txt").write_text("# the top\n" + " ".join(map(str, np.flatnonzero(arrays["face_mask"]))))
    return arrays


@pytest.mark.parametrize("mask", ["top.npy", "top.txt"])
def test_command_line_mask_keeps_the_rest_of_the_texture(tmp_path, mask):
    from engine.mesh import load_texture_image

    arrays = _cube_files(tmp_path)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "engine", "edit", "--mesh", str(tmp_path / "cube.obj"), "--up", "z",
         "--target", "a blue plain cube", "--edit", "a red plain cube", "--out", str(out), "--steps", "2",
         "--fit-max-steps", "2", "--batch-size", "1", "--device", "cpu", "--quiet", "--mask", str(tmp_path / mask)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    before = load_texture_image(tmp_path / "texture.png")
    after = load_texture_image(out / "texture.png")
    kept = _kept({**arrays, "texture": before})
    np.testing.assert_array_equal(after[kept], before[kept])
    record = json.loads((out / "job.json").read_text())
    assert record["mesh"]["mask"]["sha256"] and record["params"]["mask_border"] == BORDER
    assert "--mask" in record["command"]


def test_command_line_mask_errors_are_one_line(tmp_path):
    _cube_files(tmp_path)
    (tmp_path / "bad.txt").write_text("0 99")
    run = subprocess.run(
        [sys.executable, "-m", "engine", "texture", "--mesh", str(tmp_path / "cube.obj"), "--prompt", "a blue cube",
         "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet", "--mask", str(tmp_path / "bad.txt")],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: [bad_request] mask:"), run.stderr


def test_batch_lines_take_the_mask_and_its_bytes_are_part_of_the_job_id(tmp_path):
    from engine.batch.jobs import parse_line

    _cube_files(tmp_path)
    line = json.dumps({"task": "edit", "mesh": "cube.obj", "target": "a blue plain cube", "edit": "a red plain cube",
                       "mask": "top.npy", "mask_border": 2})
    job = parse_line(1, line, base=tmp_path)
    assert "--mask" in job.argv and job.options["mask_border"] == 2
    np.save(tmp_path / "top.npy", np.eye(1, 12, 0, dtype=np.uint8)[0])      # another region, same file name
    assert parse_line(1, line, base=tmp_path).job_id != job.job_id
