"""A fake engine for add-on tests: a real ZeroMQ ROUTER in a thread speaking the protocol (no torch, no bpy).

It answers hello/ping/status/release/cancel/shutdown and runs "texture" jobs as timed steps that emit
progress (with PNG previews) and a seed-dependent texture plus per-corner UVs. `die()` makes it go silent
mid-job, like a killed engine.
"""
from __future__ import annotations

import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import zmq

from csd_blender.link.events import array_from_wire, array_to_wire
from csd_blender.protocol import codec
from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import TextureParams
from csd_blender.protocol.limits import REQUEST_LIMITS
from csd_blender.protocol.messages import (PROTOCOL_VERSION_STR, Accepted, Cancel, Cancelled, ErrorReply,
                                           Hello, HelloReply, Ping, Pong, Progress, Release, Released, Result,
                                           Shutdown, Status, StatusReply, Submit)


def png_rgb(image: np.ndarray) -> bytes:
    """(H,W,3) uint8 -> PNG bytes (stdlib only)."""
    h, w, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def fake_texture(params: TextureParams, size: int) -> np.ndarray:
    """A seed- and prompt-dependent, non-constant (S,S,3) float32 texture in [0, 1]."""
    seed = (params.seed * 1_000_003 + sum(map(ord, params.prompt))) % 2**32
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    base = rng.random(3, dtype=np.float32)
    tex = np.stack([x * base[0], y * base[1], (x + y) / 2 * base[2]], axis=-1)
    return np.clip(tex + 0.1 * rng.random((size, size, 3), dtype=np.float32), 0, 1).astype(np.float32)


def fake_unwrap(n_faces: int) -> np.ndarray:
    """Per-corner UVs: each triangle gets its own small cell of a grid (a valid, seamless-per-face layout)."""
    cols = int(np.ceil(np.sqrt(n_faces)))
    idx = np.arange(n_faces)
    u0, v0 = (idx % cols) / cols, (idx // cols) / cols
    cell = 0.9 / cols
    corners = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)
    return (np.stack([u0, v0], axis=1)[:, None, :] + corners[None] * cell).astype(np.float32)


@dataclass
class FakeJob:
    job_id: str
    identity: bytes
    params: TextureParams
    arrays: dict
    total: int
    step: int = 0
    next_at: float = 0.0


@dataclass
class FakeEngine:
    """The fake engine; use as a context manager or call start()/stop()."""

    token: str = "fake-token"
    step_s: float = 0.05
    device: str = "cpu"
    fail_code: str = ""                   # reply to submit with this error code after the first step
    endpoint: str = ""
    submitted: list = field(default_factory=list)      # (params, arrays) of every job
    cancelled: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self._stop = threading.Event()
        self._silent = threading.Event()
        self._job: FakeJob | None = None
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)

    def __enter__(self) -> "FakeEngine":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def die(self) -> None:
        """Stop answering anything (a killed or hung engine)."""
        self._silent.set()

    @property
    def current_step(self) -> int:
        job = self._job
        return job.step if job else 0

    # ------------------------------------------------------------------------------------------ loop
    def _send(self, identity: bytes, message, parent_id: str | None) -> None:
        frames, _ = codec.encode(message, parent_id=parent_id)
        self._sock.send_multipart([identity, *frames], copy=False)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._sock.poll(10, zmq.POLLIN):
                    identity, *frames = self._sock.recv_multipart()
                    if not self._silent.is_set():
                        self._handle(identity, frames)
                if self._job is not None and not self._silent.is_set():
                    self._advance()
        finally:
            self._sock.close(0)

    def _handle(self, identity: bytes, frames: list) -> None:
        try:
            header, msg = codec.decode(frames, REQUEST_LIMITS)
        except ProtocolError as exc:
            self._send(identity, ErrorReply.from_exception(exc), None)
            return
        if header.token != self.token:
            self._send(identity, ErrorReply(None, ErrorCode.UNAUTHORIZED.value, "wrong token"), header.msg_id)
            return
        if isinstance(msg, Hello):
            self._send(identity, HelloReply(PROTOCOL_VERSION_STR, "0.0-fake", self.device, "Fake CPU",
                                            8 * 2**30, 6 * 2**30, ["texture"], ["csd", "sds"], ["toy"]),
                       header.msg_id)
        elif isinstance(msg, Ping):
            self._send(identity, Pong(self._job is not None), header.msg_id)
        elif isinstance(msg, Status):
            current = None if self._job is None else {"job_id": self._job.job_id, "task": "texture"}
            self._send(identity, StatusReply(current, [], ["toy"], self.device), header.msg_id)
        elif isinstance(msg, Release):
            self._send(identity, Released(["toy"], 0), header.msg_id)
        elif isinstance(msg, Cancel):
            if self._job is not None and self._job.job_id == msg.job_id:
                self.cancelled.append(msg.job_id)
                self._job = None
                self._send(identity, Cancelled(msg.job_id), header.msg_id)
        elif isinstance(msg, Shutdown):
            self._stop.set()
        elif isinstance(msg, Submit):
            self._submit(identity, header, msg)

    def _submit(self, identity: bytes, header, msg: Submit) -> None:
        try:
            params = TextureParams.from_dict(msg.params).validate()
            arrays = {k: array_from_wire(v) for k, v in msg.arrays.items()}
        except ProtocolError as exc:
            self._send(identity, ErrorReply.from_exception(exc, header.msg_id), header.msg_id)
            return
        self.submitted.append((params, arrays))
        total = params.steps or 3
        self._job = FakeJob(header.msg_id, identity, params, arrays, total,
                            next_at=time.monotonic() + self.step_s)
        self._send(identity, Accepted(header.msg_id, 0), header.msg_id)

    def _advance(self) -> None:
        job = self._job
        if time.monotonic() < job.next_at:
            return
        job.step += 1
        job.next_at = time.monotonic() + self.step_s
        if self.fail_code:
            self._job = None
            error = ErrorReply(job.job_id, self.fail_code, f"fake failure ({self.fail_code})")
            self._send(job.identity, error, job.job_id)
            return
        size = job.params.texture_size or 64
        preview = (fake_texture(job.params, 16) * 255 * job.step / job.total).astype(np.uint8)
        self._send(job.identity, Progress(job.job_id, "optimising", job.step, job.total, 1.0 / job.step,
                                          job.step * self.step_s, (job.total - job.step) * self.step_s,
                                          png_rgb(preview)), job.job_id)
        if job.step < job.total:
            return
        self._job = None
        faces = job.arrays["faces"]
        unwrapped = "uvs" not in job.arrays
        uvs = fake_unwrap(len(faces)) if unwrapped else job.arrays["uvs"]
        arrays = {"texture": array_to_wire(fake_texture(job.params, size)), "uvs": array_to_wire(uvs)}
        resolved = {**job.params.to_dict(), "steps": job.total, "texture_size": size}
        self._send(job.identity, Result(job.job_id, {"unwrapped": unwrapped, "params": resolved}, arrays),
                   job.job_id)
