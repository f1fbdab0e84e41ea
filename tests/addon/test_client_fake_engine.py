"""EngineClient against a fake engine on a real TCP socket: handshake, events, arrays, heartbeat, errors."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np
import pytest
import zmq

from csd_blender.link.client import EngineClient, EngineDied, JobResult
from csd_blender.protocol import codec, messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError

TOKEN = "fake-token-0123456789abcdef"


class FakeEngine(threading.Thread):
    """A ROUTER that decodes requests and answers through `handler(header, message) -> [(message, parent)]`.

    Pings get a pong while `answer_pings` is set. `version` goes into every reply header.
    """

    def __init__(self, handler: Callable | None = None, version: str = m.PROTOCOL_VERSION_STR):
        super().__init__(daemon=True)
        self.handler = handler or (lambda header, message: [])
        self.version = version
        self.answer_pings = True
        self.pong_delay_s = 0.0
        self.received: list[tuple[codec.Header, m.Message]] = []
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            self._serve()
        finally:
            self.socket.close(0)  # closed by the thread that used it; zmq sockets are not thread-safe

    def _serve(self) -> None:
        while not self._stop_event.is_set():
            if not self.socket.poll(10):
                continue
            identity, *frames = self.socket.recv_multipart()
            header, message = codec.decode(frames)
            self.received.append((header, message))
            replies = self.handler(header, message)
            if isinstance(message, m.Ping):
                time.sleep(self.pong_delay_s)
                replies = [(m.Pong(), header.msg_id)] if self.answer_pings else []
            elif isinstance(message, m.Hello) and not replies:
                replies = [(m.HelloReply(self.version, "fake", "cpu"), header.msg_id)]
            for reply, parent in replies:
                out, _ = codec.encode(reply, parent_id=parent)
                if self.version != m.PROTOCOL_VERSION_STR:
                    out[0] = out[0].replace(f'"version":"{m.PROTOCOL_VERSION_STR}"'.encode(),
                                            f'"version":"{self.version}"'.encode())
                self.socket.send_multipart([identity, *out])

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        if self.is_alive():  # never term() a context whose socket may still be in use: that blocks forever
            raise RuntimeError("the fake engine thread did not stop within 5 s")
        self.context.term()


@pytest.fixture
def engine_factory():
    engines: list[FakeEngine] = []
    clients: list[EngineClient] = []

    def make(handler=None, version=m.PROTOCOL_VERSION_STR, **client_kwargs):
        engine = FakeEngine(handler, version)
        engine.start()
        engines.append(engine)
        client = EngineClient(engine.endpoint, TOKEN, **client_kwargs)
        clients.append(client)
        return engine, client

    yield make
    for client in clients:
        client.close()
    for engine in engines:
        engine.stop()


def _poll_until(client: EngineClient, predicate, timeout_s: float = 5.0) -> list:
    events: list = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events += client.poll()
        if predicate(events):
            return events
        time.sleep(0.01)
    raise AssertionError(f"condition not met; events: {events}")


def test_handshake_returns_the_engine_description(engine_factory):
    engine, client = engine_factory()
    reply = client.connect(timeout_s=5)
    assert isinstance(reply, m.HelloReply) and reply.engine_version == "fake" and client.hello is reply
    header, hello = engine.received[0]
    assert isinstance(hello, m.Hello) and header.token == TOKEN and header.session == client.session


def test_handshake_with_a_different_major_names_both_versions(engine_factory):
    _, client = engine_factory(version="2.3")
    with pytest.raises(ProtocolError) as info:
        client.connect(timeout_s=5)
    assert info.value.code == ErrorCode.PROTOCOL_MISMATCH
    assert "2.3" in info.value.message and m.PROTOCOL_VERSION_STR in info.value.message


def test_handshake_checks_the_version_in_the_reply_body(engine_factory):
    def handler(header, message):
        return [(m.HelloReply("3.0", "fake", "cpu"), header.msg_id)] if isinstance(message, m.Hello) else []

    _, client = engine_factory(handler)
    with pytest.raises(ProtocolError) as info:
        client.connect(timeout_s=5)
    assert info.value.code == ErrorCode.PROTOCOL_MISMATCH and "3.0" in info.value.message


def test_handshake_error_from_the_engine_is_raised(engine_factory):
    def handler(header, message):
        return [(m.ErrorReply(None, "unauthorized", "missing or wrong token"), header.msg_id)]

    _, client = engine_factory(handler)
    with pytest.raises(ProtocolError) as info:
        client.connect(timeout_s=5)
    assert info.value.code == ErrorCode.UNAUTHORIZED


def test_handshake_times_out_when_nothing_listens():
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as s:  # find a free port, then close it
        port = s.bind_to_random_port("tcp://127.0.0.1")
    client = EngineClient(f"tcp://127.0.0.1:{port}", TOKEN)
    try:
        start = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            client.connect(timeout_s=0.5)
        assert info.value.code == ErrorCode.ENGINE_DIED and time.monotonic() - start < 2.0
    finally:
        client.close()


def _job_handler(texture: np.ndarray):
    def handler(header, message):
        if not isinstance(message, m.Submit):
            return []
        job = header.msg_id
        faces = np.frombuffer(message.arrays["faces"].data, np.int32).reshape(message.arrays["faces"].shape)
        out = texture + faces.sum()
        return [
            (m.Accepted(job, 0), job),
            (m.Progress(job, "optimising", 1, 2, 0.5, 0.1, 0.1, b"\x89PNGpreview"), job),
            (m.Result(job, {"sum": float(out.sum())}, {"texture": m.Array("float32", out.shape, out)}), job),
        ]

    return handler


def test_submit_sends_arrays_and_poll_returns_typed_events(engine_factory):
    texture = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    engine, client = engine_factory(_job_handler(texture))
    vertices = np.random.default_rng(1).random((3, 3))  # float64 goes out as float32
    faces = np.array([[0, 1, 2]], dtype=np.int32)
    job = client.submit("texture", {"prompt": "x"}, {"vertices": vertices, "faces": faces})
    events = _poll_until(client, lambda ev: any(isinstance(e, JobResult) for e in ev))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Accepted", "Progress", "JobResult"], kinds
    assert all(e.job_id == job for e in events)
    assert events[1].preview_png == b"\x89PNGpreview" and events[1].loss == 0.5
    np.testing.assert_array_equal(events[2].arrays["texture"], texture + 3)
    assert events[2].arrays["texture"].flags.writeable
    header, submit = next((h, s) for h, s in engine.received if isinstance(s, m.Submit))
    assert header.msg_id == job and header.token == TOKEN
    assert submit.arrays["vertices"].dtype == "float32"
    np.testing.assert_allclose(
        np.frombuffer(submit.arrays["vertices"].data, np.float32).reshape(3, 3), vertices, rtol=1e-6
    )


def test_submit_rejects_a_dtype_outside_the_allow_list(engine_factory):
    _, client = engine_factory()
    with pytest.raises(ProtocolError) as info:
        client.submit("texture", {}, {"faces": np.zeros((1, 3), np.uint16)})
    assert info.value.code == ErrorCode.BAD_ARRAY and info.value.field == "faces"


def test_poll_never_blocks(engine_factory):
    _, client = engine_factory()
    client.connect(timeout_s=5)
    start = time.perf_counter()
    for _ in range(100):
        client.poll()
    assert (time.perf_counter() - start) / 100 < 0.005


def test_wait_returns_the_result_and_keeps_other_events(engine_factory):
    texture = np.ones((2, 2, 3), np.float32)
    _, client = engine_factory(_job_handler(texture))
    faces = np.zeros((1, 3), np.int32)
    first = client.submit("texture", {}, {"faces": faces})
    second = client.submit("texture", {}, {"faces": faces + 1})
    seen = []
    result = client.wait(second, timeout_s=5, on_event=seen.append)
    assert result.job_id == second and [type(e).__name__ for e in seen] == [
        "Accepted",
        "Progress",
        "JobResult",
    ]
    np.testing.assert_array_equal(result.arrays["texture"], texture + 3)
    leftovers = client.poll()
    assert {e.job_id for e in leftovers} == {first} and isinstance(leftovers[-1], JobResult)


@pytest.mark.parametrize(
    "reply, code",
    [
        (
            lambda job: m.ErrorReply(job, "out_of_memory", "lower batch_size", field="batch_size"),
            ErrorCode.OUT_OF_MEMORY,
        ),
        (lambda job: m.Cancelled(job), ErrorCode.CANCELLED),
    ],
)
def test_wait_raises_job_failures(engine_factory, reply, code):
    def handler(header, message):
        return [(reply(header.msg_id), header.msg_id)] if isinstance(message, m.Submit) else []

    _, client = engine_factory(handler)
    job = client.submit("texture", {})
    with pytest.raises(ProtocolError) as info:
        client.wait(job, timeout_s=5)
    assert info.value.code == code


def test_wait_times_out(engine_factory):
    _, client = engine_factory()
    with pytest.raises(TimeoutError):
        client.wait(client.submit("texture", {}), timeout_s=0.3)


def test_status_release_and_cancel_round_trip(engine_factory):
    def handler(header, message):
        if isinstance(message, m.Status):
            return [(m.StatusReply({"job_id": "j1", "step": 3}, ["j2"], ["toy"], "cpu"), header.msg_id)]
        if isinstance(message, m.Release):
            return [(m.Released(["toy"], 0), header.msg_id)]
        if isinstance(message, m.Cancel):
            return [(m.Cancelled(message.job_id), message.job_id)]
        return []

    engine, client = engine_factory(handler)
    status = client.status()
    assert status.current["job_id"] == "j1" and status.queue == ["j2"]
    assert client.release().priors == ["toy"]
    client.cancel("j1")
    events = _poll_until(client, lambda ev: any(isinstance(e, m.Cancelled) for e in ev))
    assert [e.job_id for e in events if isinstance(e, m.Cancelled)] == ["j1"]
    client.shutdown()
    _poll_until(client, lambda ev: any(isinstance(s, m.Shutdown) for _, s in engine.received))


def test_heartbeat_keeps_a_live_engine_alive(engine_factory):
    engine, client = engine_factory(heartbeat_s=0.1, dead_after_s=0.5)
    client.connect(timeout_s=5)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert not any(isinstance(e, EngineDied) for e in client.poll())
        time.sleep(0.02)
    assert client.alive
    assert sum(isinstance(s, m.Ping) for _, s in engine.received) >= 5


def test_a_silent_engine_is_declared_dead_once(engine_factory):
    engine, client = engine_factory(heartbeat_s=0.1, dead_after_s=0.6)
    client.connect(timeout_s=5)
    client.poll()
    engine.answer_pings = False
    silent_since = time.monotonic()
    events = _poll_until(client, lambda ev: any(isinstance(e, EngineDied) for e in ev), timeout_s=3)
    took = time.monotonic() - silent_since
    assert 0.5 <= took <= 0.6 + 0.1 + 0.3, took
    assert not client.alive and "did not answer" in events[-1].reason
    time.sleep(0.2)
    assert client.poll() == []  # reported once
    with pytest.raises(ProtocolError) as info:
        client.wait("any-job", timeout_s=1)
    assert info.value.code == ErrorCode.ENGINE_DIED


def test_a_client_that_stopped_polling_does_not_blame_the_engine(engine_factory):
    engine, client = engine_factory(heartbeat_s=0.1, dead_after_s=0.5)
    client.connect(timeout_s=5)
    engine.pong_delay_s = 0.15  # a busy engine answers a little late, well within dead_after_s
    time.sleep(1.2)  # e.g. Blender busy: no timer ran, nothing received, no ping sent
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        assert not any(isinstance(e, EngineDied) for e in client.poll())
        time.sleep(0.02)
    assert client.alive
