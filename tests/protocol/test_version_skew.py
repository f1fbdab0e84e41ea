"""Issue 22, finding 5: neighbouring minor versions talk. Every message type, generated from the message tables
(not written per message), crosses between this protocol (1.1) and the released 1.0 (a frozen copy in
tests/fixtures/protocol_v1_0.zip) in both directions at the negotiated version; a newer minor's unknown fields are
ignored and logged once, a lower or equal minor's and another major's are refused."""

from __future__ import annotations

import dataclasses
import typing
import logging

import protocol_v1_0 as old
import pytest

import csd_blender.protocol as NEW
from csd_blender.protocol import codec, messages as new
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.limits import REPLY_LIMITS


def _kind_of(module):
    """The field-kind function of a protocol module (1.0: in messages.py; 1.1: in wire.py)."""
    return module.messages._kind if hasattr(module.messages, "_kind") else __import__(
        f"{module.__name__}.wire", fromlist=["_kind"])._kind


def _sample(module, cls):
    """An instance of message class `cls` of protocol module `module` with every field set (from its hints)."""
    values = {}
    for f in dataclasses.fields(cls):
        kind, _ = _kind_of(module)(typing.get_type_hints(cls)[f.name])
        values[f.name] = {
            "str": f"{f.name}-value", "int": 3, "float": 0.5, "bool": True, "dict": {"k": 1}, "list": ["a"],
            "bytes": b"\x89PNG-ish", "array": module.Array("float32", (2,), bytes(8)),
            "arrays": {"a": module.Array("uint8", (3,), b"abc")},
        }[kind]
    return cls(**values)


def _wire(frames) -> list[bytes]:
    return [bytes(memoryview(f)) for f in frames]


def _same(got, sent, names) -> None:
    for name in names:
        a, b = getattr(got, name), getattr(sent, name)
        if hasattr(b, "data"):
            assert bytes(memoryview(a.data)) == bytes(memoryview(b.data)) and a.dtype == b.dtype, name
        elif isinstance(b, dict) and b and hasattr(next(iter(b.values())), "data"):
            assert {k: bytes(memoryview(v.data)) for k, v in a.items()} == \
                {k: bytes(memoryview(v.data)) for k, v in b.items()}, name
        else:
            assert a == b, name


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_both_versions_have_the_same_message_types():
    assert set(old.MESSAGE_TYPES) <= set(new.MESSAGE_TYPES)
    assert old.PROTOCOL_VERSION == (1, 0) and new.PROTOCOL_VERSION[0] == 1 and new.PROTOCOL_VERSION[1] >= 1


@pytest.mark.parametrize("msg_type", sorted(old.MESSAGE_TYPES))
def test_an_old_peer_to_a_new_one(msg_type):
    """old client -> new engine (requests) and old engine -> new client (replies): every 1.0 message decodes."""
    sent = _sample(old, old.MESSAGE_TYPES[msg_type])
    frames, _ = old.codec.encode(sent, token="t" * 20, session="s" * 20)
    header, got = codec.decode(_wire(frames), REPLY_LIMITS)
    assert type(got) is new.MESSAGE_TYPES[msg_type] and header.version == "1.0"
    _same(got, sent, _names(old.MESSAGE_TYPES[msg_type]))


@pytest.mark.parametrize("msg_type", sorted(old.MESSAGE_TYPES))
def test_a_new_peer_to_an_old_one_at_the_negotiated_version(msg_type):
    """new engine -> old client (replies) and new client -> old engine (requests), at minor 0: every message
    decodes in the released 1.0 decoder, which refuses any field it does not know."""
    sent = _sample(NEW, new.MESSAGE_TYPES[msg_type])
    frames, header = codec.encode(sent, token="t" * 20, session="s" * 20, minor=new.negotiate(0))
    assert header.version == "1.0"
    old_header, got = old.codec.decode(_wire(frames), old.limits.REPLY_LIMITS)
    assert type(got) is old.MESSAGE_TYPES[msg_type]
    _same(got, sent, _names(old.MESSAGE_TYPES[msg_type]))


def test_only_the_messages_with_newer_fields_differ_at_the_full_version():
    """At 1.1 the new fields go out (a 1.0 decoder would refuse them: that is why the handshake negotiates)."""
    newer = {t for t, cls in new.MESSAGE_TYPES.items() if any(f.metadata.get("since", 0) > 0
                                                                for f in dataclasses.fields(cls))}
    assert "hello_reply" in newer
    for msg_type in newer:
        frames, _ = codec.encode(_sample(NEW, new.MESSAGE_TYPES[msg_type]))
        with pytest.raises(old.ProtocolError) as info:
            old.codec.decode(_wire(frames), old.limits.REPLY_LIMITS)
        assert info.value.code == old.ErrorCode.MALFORMED_MESSAGE


def _future(message, version: str, extra: dict, buffers: int = 0) -> list[bytes]:
    """`message` as a peer of `version` would send it with `extra` fields (and extra buffers) added."""
    frames, _ = codec.encode(message)
    wire = _wire(frames)
    import json

    header = json.loads(wire[0])
    header["version"] = version
    content = {**json.loads(wire[1]), **extra}
    return [json.dumps(header).encode(), json.dumps(content).encode(), *wire[2:], *([b"\0" * 4] * buffers)]


@pytest.mark.parametrize("msg_type", sorted(new.MESSAGE_TYPES))
def test_a_newer_minor_s_unknown_fields_are_ignored_and_logged_once(msg_type, caplog):
    caplog.set_level(logging.INFO, logger="csd_blender.protocol")
    sample = _sample(NEW, new.MESSAGE_TYPES[msg_type])
    n = len(codec.encode(sample)[0]) - 2
    extra = {"from_1_9": {"nested": [1, 2]}, "array_1_9": {"index": n, "dtype": "float32", "shape": [1]}}
    for _ in range(2):
        header, got = codec.decode(_future(sample, "1.9", extra, buffers=1), REPLY_LIMITS)
        assert type(got) is type(sample) and header.version == "1.9"
        _same(got, sample, _names(type(sample)))
    logged = [r.getMessage() for r in caplog.records if "from_1_9" in r.getMessage() and msg_type in r.getMessage()]
    assert len(logged) <= 1  # once per process, message type and field (an earlier test may have logged it)


@pytest.mark.parametrize("version, code", [("1.1", ErrorCode.MALFORMED_MESSAGE), ("1.0", ErrorCode.MALFORMED_MESSAGE),
                                           ("2.0", ErrorCode.PROTOCOL_MISMATCH),
                                           ("0.9", ErrorCode.PROTOCOL_MISMATCH)])
@pytest.mark.parametrize("msg_type", ["submit", "hello_reply", "progress", "result"])
def test_unknown_fields_from_an_equal_or_lower_minor_or_another_major_are_refused(version, code, msg_type):
    sample = _sample(NEW, new.MESSAGE_TYPES[msg_type])
    with pytest.raises(ProtocolError) as info:
        codec.decode(_future(sample, version, {"surprise": 1}), REPLY_LIMITS)
    assert info.value.code == code, info.value


@pytest.mark.parametrize("ours, theirs, spoken", [(1, 0, 0), (1, 1, 1), (1, 5, 1)])
def test_the_handshake_settles_on_the_lower_minor(ours, theirs, spoken):
    assert min(ours, new.negotiate(theirs)) == spoken
