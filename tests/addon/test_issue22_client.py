"""Issue 22, the client's side (no bpy): against an engine of the released protocol 1.0 (a frozen copy) the client
settles on 1.0 and sends only what 1.0 reads (an edit texture as float32); a refusal the engine could not tie to a
job, replied to the submit's msg_id, ends that job at once (no wait for a timeout); and a submit over the limits
the engine names is refused before it is sent, naming the limit."""

from __future__ import annotations

import threading
import time

import numpy as np
import protocol_v1_0 as old
import pytest
import zmq

from csd_blender.link.client import EngineClient
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError

TOKEN = "issue22-client-token-0123456789"


class OldEngine(threading.Thread):
    """A 1.0 engine: answers hello, and refuses every submit with message_too_large to its msg_id, job_id null (as
    the 1.0 engine did for a request too large to read); records what it decoded."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.received: list = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if not self.sock.poll(20):
                continue
            identity, *frames = self.sock.recv_multipart()
            header, message = old.codec.decode(frames, old.limits.REQUEST_LIMITS)  # raises on a 1.1-only field
            self.received.append((header, message))
            if isinstance(message, old.Hello):
                reply = old.HelloReply("1.0", "old", "cpu")
            elif isinstance(message, old.Submit):
                reply = old.ErrorReply(None, "message_too_large", "message is 300000000 bytes; the limit is 268435456")
            else:
                continue
            out, _ = old.codec.encode(reply, parent_id=header.msg_id)
            self.sock.send_multipart([identity, *out])

    def close(self):
        self.stop.set()
        self.join(5)
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def engine():
    engine = OldEngine()
    engine.start()
    yield engine
    engine.close()


def test_against_a_1_0_engine_the_client_speaks_1_0_and_a_refused_job_ends_at_once(engine):
    with EngineClient(f"tcp://127.0.0.1:{engine.port}", TOKEN) as client:
        assert client.connect(timeout_s=5).protocol_version == "1.0" and client.minor == 0
        texture = np.full((16, 16, 4), 128, np.uint8)
        faces = np.zeros((1, 3), np.int32)
        job = client.submit("edit", {"target_prompt": "a", "edit_prompt": "b"},
                            {"vertices": np.zeros((3, 3), np.float32), "faces": faces, "texture": texture})
        started = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            client.wait(job, timeout_s=10)
        assert info.value.code == ErrorCode.MESSAGE_TOO_LARGE and time.monotonic() - started < 2.0
    header, submit = next((h, r) for h, r in reversed(engine.received) if isinstance(r, old.Submit))
    assert header.version == "1.0" and submit.arrays["texture"].dtype == "float32"  # what 1.0 takes


def test_a_submit_over_the_engine_s_limits_is_refused_before_sending_naming_the_limit(engine):
    with EngineClient(f"tcp://127.0.0.1:{engine.port}", TOKEN) as client:
        client.connect(timeout_s=5)
        client.hello.limits = {"max_buffer_bytes": 1024, "max_message_bytes": 4096, "max_buffers": 16}
        sent = len(engine.received)
        with pytest.raises(ProtocolError) as info:
            client.submit("texture", {"prompt": "a red sphere"}, {"vertices": np.zeros((1000, 3), np.float32)})
        assert info.value.code == ErrorCode.MESSAGE_TOO_LARGE and "at most 1024 bytes per array" in info.value.message
        assert "vertices" in info.value.message and len(engine.received) == sent
        with pytest.raises(ProtocolError, match="4096"):  # an edit texture over the side limit names it
            client.submit("edit", {}, {"texture": np.zeros((4100, 8, 4), np.uint8)})


def test_a_1_1_client_sends_an_8_bit_texture_as_uint8_and_a_float_one_as_float16():
    from csd_blender.link.outgoing import wire_arrays

    u8 = wire_arrays("edit", {"texture": np.zeros((8, 8, 4), np.uint8)}, m.MINOR, {})["texture"]
    f16 = wire_arrays("edit", {"texture": np.full((8, 8, 4), 7.0, np.float32)}, m.MINOR, {})["texture"]
    assert u8.dtype == "uint8" and f16.dtype == "float16"
    assert np.frombuffer(f16.data, np.float16).max() == 1.0  # clipped to [0, 1]: never inf
