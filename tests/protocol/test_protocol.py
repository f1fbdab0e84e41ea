"""Protocol unit tests (no engine, no sockets): codec round trips, limits, malformed frames, versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csd_blender.protocol import codec, messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import TextureParams
from csd_blender.protocol.limits import Limits


def _arr(value: np.ndarray) -> m.Array:
    return m.Array(value.dtype.name, value.shape, np.ascontiguousarray(value))


VERTS = np.arange(12, dtype=np.float32).reshape(4, 3)
FACES = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)

SAMPLES = [
    m.Hello("csd_blender", "1.0"),
    m.HelloReply(
        "1.0", "0.1.0", "cpu", "x86", 16, 8, ["texture"], ["csd", "sds"], ["toy"], {"nvdiffrast": False}
    ),
    m.Submit(
        "texture", {"prompt": "a red apple", "steps": 3}, {"vertices": _arr(VERTS), "faces": _arr(FACES)}
    ),
    m.Accepted("job1", 2),
    m.Progress("job1", "optimising", 3, 10, 0.25, 1.5, 3.0, b"\x89PNG fake"),
    m.Progress("job1", "loading", 0, 0, None, 0.0, None, None),
    m.Result(
        "job1",
        {"checksum": 1.5},
        {"texture": _arr(np.ones((2, 2, 3), np.float32)), "uvs": _arr(np.zeros((2, 3, 2), np.float16))},
    ),
    m.ErrorReply("job1", "bad_request", "steps: must be > 0", "detail", "Traceback...", "steps"),
    m.ErrorReply(None, "malformed_message", "bad JSON"),
    m.Cancel("job1"),
    m.Cancelled("job1"),
    m.Release(),
    m.Released(["toy"], 0),
    m.Ping(),
    m.Pong(True),
    m.Status(),
    m.StatusReply({"job_id": "j", "step": 1}, ["a", "b"], ["toy"], "cpu"),
    m.Shutdown(),
]


def _frames(header: dict | bytes, content: dict | bytes, *buffers) -> list:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    c = content if isinstance(content, bytes) else json.dumps(content).encode()
    return [h, c, *buffers]


def _header(msg_type: str = "ping", **over) -> dict:
    h = {
        "msg_id": "abc",
        "msg_type": msg_type,
        "version": "1.0",
        "parent_id": None,
        "token": "t",
        "session": "s",
    }
    h.update(over)
    return h


def _expect(code: ErrorCode, frames, limits: Limits = Limits(), match: str = "") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode(frames, limits)
    assert info.value.code == code, info.value
    assert match in info.value.message
    return info.value


def test_every_message_type_has_a_sample():
    assert {type(s).MSG_TYPE for s in SAMPLES} == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda s: type(s).MSG_TYPE)
def test_round_trip(message):
    frames, header = codec.encode(message, parent_id="p1", token="tok", session="sess")
    wire = [bytes(memoryview(f)) for f in frames]  # what actually crosses the socket
    got_header, got = codec.decode(wire)
    assert (
        got_header == header
        and header.parent_id == "p1"
        and header.token == "tok"
        and header.version == m.PROTOCOL_VERSION_STR
    )
    assert type(got) is type(message)
    for name in message.__dataclass_fields__:
        want, have = getattr(message, name), getattr(got, name)
        if name == "arrays":
            assert set(want) == set(have)
            for key in want:
                a, b = want[key], have[key]
                assert (a.dtype, a.shape) == (b.dtype, b.shape)
                np.testing.assert_array_equal(np.frombuffer(b.data, a.dtype).reshape(b.shape), a.data)
        else:
            assert have == want, name


def test_arrays_travel_as_raw_buffers_with_refs():
    frames, _ = codec.encode(SAMPLES[2])
    content = json.loads(frames[1])
    assert content["arrays"]["vertices"] == {"index": 0, "dtype": "float32", "shape": [4, 3]}
    assert len(frames) == 4 and bytes(memoryview(frames[2])) == VERTS.tobytes()


def test_params_dataclass_survives_the_wire():
    params = TextureParams(prompt="a wooden chair", steps=5, texture_size=64).validate()
    frames, _ = codec.encode(m.Submit("texture", params.to_dict()))
    _, got = codec.decode([bytes(f) for f in frames])
    assert TextureParams.from_dict(json.loads(json.dumps(got.params))).validate() == params


def test_nan_is_never_written_and_never_accepted():
    with pytest.raises(ValueError):
        codec.encode(m.Progress("j", "s", 1, 2, float("nan")))
    _expect(
        ErrorCode.MALFORMED_MESSAGE,
        _frames(_header("submit"), b'{"task":"texture","params":{"seed":NaN}}'),
        match="NaN",
    )


@pytest.mark.parametrize(
    "limits, frames, match",
    [
        (Limits(max_buffers=1), _frames(_header(), {}, b"a", b"b"), "buffer frames"),
        (Limits(max_message_bytes=1000), _frames(_header(), {}, b"x" * 1000), "message is"),
        (Limits(max_buffer_bytes=10), _frames(_header(), {}, b"x" * 11), "buffer 0"),
        (Limits(max_json_bytes=150), _frames(_header(), {"pad": "x" * 200}), "content frame"),
    ],
)
def test_size_limits(limits, frames, match):
    _expect(ErrorCode.MESSAGE_TOO_LARGE, frames, limits, match)


@pytest.mark.parametrize(
    "frames, code, match",
    [
        ([b"only one frame"], ErrorCode.MALFORMED_MESSAGE, "truncated"),
        ([], ErrorCode.MALFORMED_MESSAGE, "truncated"),
        ([b"\xff\xfe\x00garbage", b"{}"], ErrorCode.MALFORMED_MESSAGE, "not UTF-8"),
        ([b"{not json", b"{}"], ErrorCode.MALFORMED_MESSAGE, "not valid JSON"),
        ([b"[1, 2]", b"{}"], ErrorCode.MALFORMED_MESSAGE, "header must be a JSON object"),
        (
            _frames({"msg_type": "ping", "version": "1.0"}, {}),
            ErrorCode.MALFORMED_MESSAGE,
            "msg_id is missing",
        ),
        (_frames(_header(msg_id=7), {}), ErrorCode.MALFORMED_MESSAGE, "msg_id must be a string"),
        (_frames(_header(), b"[]"), ErrorCode.MALFORMED_MESSAGE, "content must be a JSON object"),
        (_frames(_header(), b"[" * 100000), ErrorCode.MALFORMED_MESSAGE, "not valid JSON"),
        (_frames(_header(version="one"), {}), ErrorCode.MALFORMED_MESSAGE, "major.minor"),
        (_frames(_header(msg_type="launch_missiles"), {}), ErrorCode.UNKNOWN_MESSAGE, "launch_missiles"),
        (_frames(_header(), {"extra": 1}), ErrorCode.MALFORMED_MESSAGE, "unknown field 'extra'"),
        (_frames(_header("cancel"), {}), ErrorCode.MALFORMED_MESSAGE, "cancel.job_id is missing"),
        (_frames(_header("cancel"), {"job_id": 5}), ErrorCode.MALFORMED_MESSAGE, "must be str"),
        (
            _frames(
                _header("submit"),
                {"task": "texture", "arrays": {"v": {"index": 0, "dtype": "float32", "shape": [1]}}},
            ),
            ErrorCode.MALFORMED_MESSAGE,
            "buffer count mismatch",
        ),
        (
            _frames(_header("submit"), {"task": "texture"}, b"1234"),
            ErrorCode.MALFORMED_MESSAGE,
            "buffer count mismatch",
        ),
        (
            _frames(
                _header("submit"),
                {
                    "task": "t",
                    "arrays": {
                        "a": {"index": 0, "dtype": "float32", "shape": [1]},
                        "b": {"index": 0, "dtype": "float32", "shape": [1]},
                    },
                },
                b"1234",
            ),
            ErrorCode.MALFORMED_MESSAGE,
            "referenced twice",
        ),
        (
            _frames(
                _header("submit"),
                {"task": "t", "arrays": {"v": {"index": 0, "dtype": "object", "shape": [1]}}},
                b"12345678",
            ),
            ErrorCode.BAD_ARRAY,
            "not allowed",
        ),
        (
            _frames(
                _header("submit"),
                {"task": "t", "arrays": {"v": {"index": 0, "dtype": "float64", "shape": [1]}}},
                b"12345678",
            ),
            ErrorCode.BAD_ARRAY,
            "not allowed",
        ),
        (
            _frames(
                _header("submit"),
                {"task": "t", "arrays": {"v": {"index": 0, "dtype": "float32", "shape": [3]}}},
                b"12345678",
            ),
            ErrorCode.BAD_ARRAY,
            "needs 12",
        ),
        (
            _frames(
                _header("submit"),
                {"task": "t", "arrays": {"v": {"index": 0, "dtype": "float32", "shape": [-2]}}},
                b"",
            ),
            ErrorCode.BAD_ARRAY,
            "non-negative",
        ),
        (
            _frames(
                _header("progress"),
                {
                    "job_id": "j",
                    "stage": "s",
                    "step": 1,
                    "total": 2,
                    "preview_png": {"index": 0, "dtype": "float32", "shape": [1]},
                },
                b"1234",
            ),
            ErrorCode.BAD_ARRAY,
            "1-D uint8",
        ),
    ],
)
def test_malformed_frames(frames, code, match):
    _expect(code, frames, match=match)


def test_frames_that_are_not_buffers():
    _expect(ErrorCode.MALFORMED_MESSAGE, ["a string frame", b"{}"], match="not a byte buffer")


@pytest.mark.parametrize("version, ok", [("1.0", True), ("1.9", True), ("2.0", False), ("0.1", False)])
def test_version_check(version, ok):
    frames = _frames(_header(version=version), {})
    if ok:
        assert isinstance(codec.decode(frames)[1], m.Ping)
    else:
        err = _expect(ErrorCode.PROTOCOL_MISMATCH, frames)
        assert version in err.message and m.PROTOCOL_VERSION_STR in err.message


def test_protocol_version_is_separate_from_the_package_version():
    assert m.PROTOCOL_VERSION == (1, 1) and m.PROTOCOL_VERSION_STR == "1.1"


def test_error_reply_maps_back_to_exceptions():
    err = m.ErrorReply("j", "out_of_memory", "lower batch_size", "d", "tb", "batch_size").to_exception()
    assert err.code == ErrorCode.OUT_OF_MEMORY and err.field == "batch_size" and err.traceback == "tb"
    assert m.ErrorReply(None, "from_the_future", "x").to_exception().code == ErrorCode.INTERNAL
    back = m.ErrorReply.from_exception(
        ProtocolError(ErrorCode.BAD_PROMPT, "prompt: empty", field="prompt"), "j"
    )
    assert (back.code, back.field, back.job_id) == ("bad_prompt", "prompt", "j")


def test_array_checks_its_own_length():
    with pytest.raises(ProtocolError) as info:
        m.Array("int32", (2, 3), b"\x00" * 20)
    assert info.value.code == ErrorCode.BAD_ARRAY


def test_prompt_with_lone_surrogate_is_a_bad_prompt():
    with pytest.raises(ProtocolError) as info:
        TextureParams(prompt="a \udcff chair").validate()
    assert info.value.code == ErrorCode.BAD_PROMPT and info.value.field == "prompt"


# --- issue 15: canonical versions, duplicate keys, out-of-range numbers, JSON-safe replies --------------------


@pytest.mark.parametrize("version", ["01.0", "1.00", "1.0\n", " 1.0", "+1.0", "1.0.0", "1", "١.٠", "1١.0"])
def test_non_canonical_versions_are_malformed(version):
    _expect(ErrorCode.MALFORMED_MESSAGE, _frames(_header(version=version), {}), match="major.minor")


def test_a_key_given_twice_is_malformed_not_the_last_one():
    token_twice = json.dumps(_header()).encode()[:-1] + b', "msg_type": "ping"}'
    _expect(ErrorCode.MALFORMED_MESSAGE, [token_twice, b"{}"], match="duplicate key 'msg_type'")
    content_twice = b'{"job_id": "a", "job_id": "b"}'
    _expect(ErrorCode.MALFORMED_MESSAGE, _frames(_header("cancel"), content_twice), match="duplicate key")


def test_numbers_json_cannot_carry_back_are_malformed():
    content = b'{"task": "texture", "params": {"learning_rate": 1e400}}'
    _expect(ErrorCode.MALFORMED_MESSAGE, _frames(_header("submit"), content), match="out of range")


@pytest.mark.parametrize("field", ["msg_id", "token", "session", "parent_id"])
def test_header_text_with_a_lone_surrogate_is_malformed(field):
    _expect(ErrorCode.MALFORMED_MESSAGE, _frames(_header(**{field: "ab\ud800"}), {}), match=f"header.{field}")


def test_non_finite_floats_become_null_and_are_named():
    message = m.Result("j", {"stats": {"final_loss": float("nan"), "ok": 1.5, "curve": [1.0, float("inf")]}})
    with pytest.raises(ValueError):
        codec.encode(message)  # without `replaced` the codec refuses, as JSON does
    replaced: list[str] = []
    frames, _ = codec.encode(message, replaced=replaced)
    _, back = codec.decode(frames)
    assert back.meta == {"stats": {"final_loss": None, "ok": 1.5, "curve": [1.0, None]}}
    assert replaced == ["result.meta.stats.final_loss", "result.meta.stats.curve[1]"]
    np_scalars: list[str] = []
    frames, _ = codec.encode(m.Result("j", {"n": np.float32(2.5), "i": np.int64(3)}), replaced=np_scalars)
    assert codec.decode(frames)[1].meta == {"n": 2.5, "i": 3} and np_scalars == []


def test_error_id_and_others_counts_travel():
    frames, _ = codec.encode(m.ErrorReply("j", "internal", "internal engine error abc", error_id="abc"))
    err = codec.decode(frames)[1].to_exception()
    assert err.code == ErrorCode.INTERNAL and err.error_id == "abc"
    frames, _ = codec.encode(m.StatusReply(None, [], [], "cpu", 1, 4))
    back = codec.decode(frames)[1]
    assert (back.others_running, back.others_queued) == (1, 4)


def test_error_replies_are_one_printable_line():
    exc = ProtocolError(ErrorCode.BAD_REQUEST, "\n: unknown field a\x07b \ud800 \x7f ok", field="\n")
    reply = m.ErrorReply.from_exception(exc, "j")
    assert reply.message == "\\n: unknown field a\\x07b \\ud800 \\x7f ok" and reply.field == "\\n"
    assert m.ErrorReply.from_exception(ProtocolError(ErrorCode.BAD_REQUEST, "plain: text"), "j").message == (
        "plain: text")
