"""engine/serve/arrays.py: wire arrays checked against ARRAY_SPECS before any work (no sockets, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.messages import Array
from engine.serve.arrays import check_arrays, from_numpy, to_numpy

VERTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
FACES = np.array([[0, 1, 2], [0, 2, 3]], np.int32)


def wire(**arrays) -> dict:
    base = {"vertices": VERTS, "faces": FACES}
    base.update(arrays)
    return {k: from_numpy(v) for k, v in base.items() if v is not None}


def test_valid_arrays_come_back_as_writable_copies():
    out = check_arrays("texture", wire(uvs=np.zeros((2, 3, 2), np.float32)))
    np.testing.assert_array_equal(out["faces"], FACES)
    assert out["vertices"].flags.writeable and out["uvs"].shape == (2, 3, 2)


def test_round_trip_of_the_numpy_helpers():
    value = np.arange(6, dtype=np.float64).reshape(2, 3)
    array = from_numpy(value)
    assert array.dtype == "float32" and array.shape == (2, 3)
    np.testing.assert_array_equal(to_numpy(array), value)


@pytest.mark.parametrize(
    "arrays, code, field, match",
    [
        (wire(faces=None), ErrorCode.BAD_ARRAY, "faces", "required"),
        (wire(normals=np.zeros((4, 3), np.float32)), ErrorCode.BAD_ARRAY, "normals", "unknown array"),
        (wire(faces=FACES.astype(np.int64)), ErrorCode.BAD_ARRAY, "faces", "dtype is int64"),
        (wire(vertices=VERTS[None]), ErrorCode.BAD_ARRAY, "vertices", "dimensions"),
        (wire(faces=np.zeros((2, 4), np.int32)), ErrorCode.BAD_ARRAY, "faces", "dimension 1 is 4"),
        (wire(uvs=np.zeros((3, 3, 2), np.float32)), ErrorCode.BAD_ARRAY, "uvs", "along F"),
        (
            wire(c2w=np.tile(np.eye(4, dtype=np.float32), (2, 1, 1)), intrinsics=np.ones((3, 6), np.float32)),
            ErrorCode.BAD_ARRAY,
            "intrinsics",
            "along N",
        ),
        (
            wire(c2w=np.full((1, 4, 4), np.inf, np.float32), intrinsics=np.ones((1, 6), np.float32)),
            ErrorCode.BAD_ARRAY,
            "c2w",
            "NaN or infinite",
        ),
        (
            wire(vertices=np.zeros((0, 3), np.float32), faces=np.zeros((0, 3), np.int32)),
            ErrorCode.INVALID_MESH,
            "vertices",
            "no vertices",
        ),
        (
            wire(faces=np.array([[0, 1, 4]], np.int32)),
            ErrorCode.INVALID_MESH,
            "faces",
            "index 4 is out of range",
        ),
    ],
)
def test_bad_arrays_name_the_array(arrays, code, field, match):
    with pytest.raises(ProtocolError) as info:
        check_arrays("texture", arrays)
    assert info.value.code == code and info.value.field == field and match in info.value.message


def test_limits_are_checked_on_shapes_before_the_data_is_read():
    class Unreadable(Array):
        """Claims a huge shape; reading its data would fail the test."""

        def __post_init__(self):
            pass

        @property
        def data(self):
            raise AssertionError("data was read")

        @data.setter
        def data(self, value):
            pass

    arrays = wire()
    arrays["faces"] = Unreadable("int32", (1_000_001, 3), b"")
    with pytest.raises(ProtocolError) as info:
        check_arrays("texture", arrays)
    assert info.value.code == ErrorCode.MESH_TOO_LARGE and "1000001 faces" in info.value.message


# --- issue 15: a camera rig is checked against the mesh before the job is accepted ------------------------------


def _camera(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Blender camera (looks down -Z, +Y up) at `eye` aimed at `target`."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


K = np.array([50.0, 50.0, 31.5, 31.5, 64.0, 64.0])


def _check_rig(c2w, intrinsics=None):
    from engine.render.rig import check_rig

    c2w = np.asarray(c2w, np.float32).reshape(-1, 4, 4)
    k = np.tile(K, (len(c2w), 1)) if intrinsics is None else np.asarray(intrinsics, np.float64).reshape(-1, 6)
    check_rig({"vertices": VERTS, "faces": FACES, "c2w": c2w, "intrinsics": k.astype(np.float32)})


def _refused(c2w, intrinsics=None, field="c2w", match=""):
    with pytest.raises(ProtocolError) as info:
        _check_rig(c2w, intrinsics)
    assert info.value.code == ErrorCode.BAD_REQUEST and info.value.field == field, info.value
    assert match in info.value.message


def test_a_rig_aimed_at_the_mesh_passes_and_one_camera_that_sees_it_is_enough():
    _check_rig(_camera((3, -3, 2)))
    away = _camera((3, -3, 2), (6, -6, 4))  # behind the camera
    _refused(away, match="no camera of the rig sees the mesh")
    _check_rig(np.stack([away, _camera((0, -4, 0))]))


@pytest.mark.parametrize("eye, target", [((0, -4, 0), (50, -4, 0)),      # aimed far to the side
                                         ((0, -1000, 0), (0, 0, 0)),     # beyond the far plane (100 mesh sizes)
                                         ((0, -4, 0), (0, -3.9, 50))])   # straight up, mesh below the frame
def test_a_rig_that_misses_the_mesh_is_refused(eye, target):
    _refused(_camera(eye, target), match="sees the mesh")


@pytest.mark.parametrize("row, match", [
    ([0, 0, 0, 0, 0, 0], "whole pixels"),
    ([50, 50, 31.5, 31.5, 64, 1e-30], "whole pixels"),
    ([50, 50, 31.5, 31.5, 64.5, 64], "whole pixels"),
    ([50, 50, 31.5, 31.5, 20000, 64], "whole pixels"),
    ([3e38, 50, 31.5, 31.5, 64, 64], "field of view"),
    ([-50, 50, 31.5, 31.5, 64, 64], "field of view"),
    ([0.001, 0.001, 31.5, 31.5, 64, 64], "field of view"),
    ([50, 50, 5000, 31.5, 64, 64], "principal point"),
])
def test_insane_intrinsics_are_refused_naming_the_camera(row, match):
    _refused(_camera((3, -3, 2)), row, "intrinsics", "camera 0: ")
    _refused(_camera((3, -3, 2)), row, "intrinsics", match)


def test_rig_shapes_counts_and_matrices():
    from csd_blender.protocol.params import MAX_CAMERAS
    from engine.render.rig import check_rig

    with pytest.raises(ProtocolError, match="at least one camera"):
        check_rig({"vertices": VERTS, "c2w": np.zeros((0, 4, 4), np.float32), "intrinsics": np.zeros((0, 6))})
    with pytest.raises(ProtocolError, match="needs both") as info:
        check_rig({"vertices": VERTS, "c2w": _camera((3, -3, 2))[None]})
    assert info.value.field == "intrinsics"
    many = np.tile(_camera((3, -3, 2)), (MAX_CAMERAS + 1, 1, 1))
    _refused(many, match=f"the limit is {MAX_CAMERAS}")
    scaled = _camera((3, -3, 2))
    scaled[:3, :3] *= 2
    _refused(scaled, match="orthonormal")
    projective = _camera((3, -3, 2))
    projective[3, 0] = 1
    _refused(projective, match="bottom row")
    check_rig({"vertices": VERTS, "faces": FACES})  # no rig: nothing to check


def test_rejected_arrays_are_not_copied():
    """A NaN at the end of a large array is found on a view of the frame: the failed check allocates little."""
    import tracemalloc

    vertices = np.zeros((1_000_000, 3), np.float32)
    vertices[-1, 2] = np.inf
    arrays = wire(vertices=vertices)
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="1 value"):
        check_arrays("texture", arrays)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < vertices.nbytes / 2, peak
