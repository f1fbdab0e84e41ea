"""engine/validate.py: wire arrays checked against ARRAY_SPECS before any work (no sockets, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.messages import Array
from engine.validate import check_arrays, from_numpy, to_numpy

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
