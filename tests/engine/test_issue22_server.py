"""Issue 22 on a real socket (an in-process server with the fake sleepy task and the toy prior): a refusal that
cannot be read as a request still closes the request (and the job) that caused it, late refusals come before
`accepted`, session ids are secrets, and an old (1.0) client and a new one each get messages they can read."""

from __future__ import annotations

import time

import numpy as np
import protocol_v1_0 as old
import pytest
import zmq
from server_jobs import ARRAYS, EDIT, edit_arrays, params
from server_thread import TOKEN, serving, sleepy_task_registered

from csd_blender.link.client import EngineClient
from csd_blender.protocol import codec
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.limits import REPLY_LIMITS, Limits, MiB

SMALL = Limits(max_message_bytes=2 * MiB, max_buffer_bytes=1 * MiB, max_json_bytes=64 * 1024, max_buffers=16)


@pytest.fixture(scope="module", autouse=True)
def _sleepy_task_only_here():
    yield from sleepy_task_registered()


@pytest.fixture(scope="module")
def server():
    yield from serving(limits=SMALL)


@pytest.fixture
def dealer(server):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    yield sock
    sock.close()
    ctx.term()


def _replies(sock, decode, until, timeout_s: float = 30.0) -> list:
    """(header, message) pairs decoded with `decode` until one satisfies `until`."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sock.poll(100):
            got.append(decode(sock.recv_multipart()))
            if until(got[-1][1]):
                return got
    raise AssertionError(f"timed out: {[type(g[1]).__name__ for g in got]}")


def _new_decode(frames):
    return codec.decode(frames, REPLY_LIMITS)


def _old_decode(frames):
    return old.codec.decode(frames, old.limits.REPLY_LIMITS)


# --- finding 1: a too-large request is answered to its msg_id, and a submit's job is named ------------------------


def test_a_submit_too_large_to_read_is_answered_with_its_job_id(server, dealer):
    big = np.zeros((768, 512, 2), np.float32)  # 3 MiB: over this engine's limits (1 MiB a buffer, 2 MiB in all)
    frames, header = codec.encode(m.Submit("edit", dict(EDIT), {"texture": m.Array("float32", big.shape, big)}),
                                  token=TOKEN)
    dealer.send_multipart(frames)
    (reply_header, reply), = _replies(dealer, _new_decode, lambda r: True)
    assert isinstance(reply, m.ErrorReply) and reply.code == ErrorCode.MESSAGE_TOO_LARGE.value
    assert reply_header.parent_id == header.msg_id and reply.job_id == header.msg_id, (reply_header, reply)
    assert "limit" in reply.message


def test_the_client_fails_a_refused_job_at_once(server):
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=10)
        started = time.monotonic()
        with pytest.raises(Exception) as info:  # the client knows the limits (1.1): refused before sending
            client.wait(client.submit("sleepy", {"steps": 2}, {"blob": np.zeros(2 * MiB, np.uint8)}), timeout_s=30)
        assert getattr(info.value, "code", None) in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.BAD_ARRAY), info.value
        assert time.monotonic() - started < 10


# --- finding 6: session ids are secrets -------------------------------------------------------------------------


def test_a_short_guessable_session_is_refused(server, dealer):
    frames, _ = codec.encode(m.Status(), token=TOKEN, session="artist1")
    dealer.send_multipart(frames)
    (_, reply), = _replies(dealer, _new_decode, lambda r: True)
    assert isinstance(reply, m.ErrorReply) and reply.code == ErrorCode.UNAUTHORIZED.value and "session" in reply.message


# --- finding 8: refused before `accepted` ------------------------------------------------------------------------


@pytest.mark.parametrize("over, field", [({"prompt": "a red spherr"}, "prompt"),
                                         ({"model": "/no/such/model"}, "model")])
def test_a_typo_or_a_missing_model_is_refused_before_accepted(server, dealer, over, field):
    frames, header = codec.encode(m.Submit("texture", params("toy", **over), {k: m.Array(v.dtype.name, v.shape, v)
                                                                             for k, v in ARRAYS.items()}), token=TOKEN)
    dealer.send_multipart(frames)
    (_, reply), = _replies(dealer, _new_decode, lambda r: True)
    assert isinstance(reply, m.ErrorReply) and reply.field == field and reply.job_id == header.msg_id, reply


# --- finding 5: an old client and a new one on the same engine -------------------------------------------------


def test_an_old_client_gets_only_messages_it_can_read(server, dealer):
    frames, _ = old.codec.encode(old.Hello("csd_blender", "1.0"), token=TOKEN)
    dealer.send_multipart(frames)
    (header, hello), = _replies(dealer, _old_decode, lambda r: True)
    assert isinstance(hello, old.HelloReply) and header.version == "1.0" and hello.protocol_version == "1.0"
    frames, _ = old.codec.encode(old.Submit("sleepy", {"steps": 3, "step_s": 0.01}), token=TOKEN)
    dealer.send_multipart(frames)
    got = _replies(dealer, _old_decode, lambda r: isinstance(r, (old.Result, old.ErrorReply)))
    kinds = [type(r).__name__ for _, r in got]
    assert kinds[0] == "Accepted" and kinds[-1] == "Result" and "Progress" in kinds, kinds
    frames, _ = old.codec.encode(old.Status(), token=TOKEN)
    dealer.send_multipart(frames)
    (_, status), = _replies(dealer, _old_decode, lambda r: True)
    assert isinstance(status, old.StatusReply)


def test_a_new_client_speaks_1_1_and_learns_the_limits(server):
    with EngineClient(server.endpoint, TOKEN) as client:
        hello = client.connect(timeout_s=10)
        assert hello.protocol_version == m.PROTOCOL_VERSION_STR
        assert hello.limits["max_buffer_bytes"] == SMALL.max_buffer_bytes and hello.limits["edit_texture_side"]
        assert hello.workers and hello.workers[0]["device"] == "cpu"


@pytest.mark.parametrize("dtype", ["uint8", "float16"])
def test_an_edit_texture_travels_as_what_it_holds(server, dtype):
    arrays = edit_arrays()
    texture = arrays["texture"]
    arrays["texture"] = (np.round(texture * 255).astype(np.uint8) if dtype == "uint8" else texture.astype(dtype))
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=10)
        result = client.wait(client.submit("edit", dict(EDIT), arrays), timeout_s=300)
        assert result.arrays["texture"].shape[:2] == texture.shape[:2]
