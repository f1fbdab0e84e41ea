"""Bounded, seeded fuzzing of the engine server (issue 15): mutated messages and random texture jobs.

Message level: a few thousand mutations of valid requests (frames dropped, duplicated, cut or replaced; JSON
fields given random types, extreme numbers, lone surrogates, duplicate keys; buffer descriptors bent) go to one
in-process engine; every reply must be clean (no traceback, no path, never `internal`) and the engine must
answer a ping between rounds. Job level: random `TextureParams` and `guidance_overrides` (random types and
extreme values; the settings that decide a job's cost stay small when valid) must each end in a result or a
specific error code, with the engine serving on. `CSD_FUZZ_SEED` picks another seed; `CSD_FUZZ_SCALE` multiplies
the counts for a longer run.
"""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import pytest
import zmq
from test_server import ARRAYS, params
from test_server_hardening import TOKEN, _start, _stop, assert_clean

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import codec
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.limits import REPLY_LIMITS

SEED = int(os.environ.get("CSD_FUZZ_SEED", "15"))
SCALE = float(os.environ.get("CSD_FUZZ_SCALE", "1"))
MESSAGES = int(3000 * SCALE)
JOBS = int(60 * SCALE)
PING_EVERY = 250
# a job that runs must end in one of these; `internal` is an engine defect, never an answer to input
JOB_CODES = {c.value for c in ErrorCode} - {ErrorCode.INTERNAL.value, ErrorCode.ENGINE_DIED.value}
NEVER_SENT = {"shutdown", "release"}  # the fuzzer must not stop the engine or drop its prior on purpose


@pytest.fixture(scope="module")
def server():
    started = _start()
    yield started[0]
    _stop(*started)


# --- random JSON -----------------------------------------------------------------------------------------------

STRINGS = ["", " ", "a", "x" * 5000, "\ud800", "a\udcffb", "\x00\x07", "ünïcødé 字", "../../etc/passwd", "1.0",
           "NaN", "toy", "texture", "auto", "{}", "\n", "a red sphere"]
NUMBERS = [0, -1, 1, 2, 3, 2**31, -(2**31), 2**63, 2**64 + 1, 10**30, 0.5, -0.0, 1e-300, 1e30, -1e30,
           1.7976931348623157e308, 5e-324, 3.0, 64, 4096, 100_000]


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(NUMBERS)
    if kind == 3:
        return rng.choice(STRINGS)
    if kind == 4:
        return rng.uniform(-1e6, 1e6)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 6:
        return {rng.choice(STRINGS + ["index", "dtype", "shape"]): random_json(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return [[[]]] * rng.randrange(3)


def _paths(obj, prefix=()):
    """Every (path) into nested dicts/lists."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate_json(rng: random.Random, obj):
    """Change one place of a JSON object: a random value, a deletion, an extra key, or a schema-aware bend."""
    paths = [p for p in _paths(obj) if p]
    if not paths:
        return random_json(rng)
    path = rng.choice(paths)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.randrange(6)
    if op == 0 and isinstance(parent, dict):
        del parent[key]
    elif op == 1 and isinstance(parent, dict):
        parent[rng.choice(STRINGS)] = random_json(rng)
    elif op == 2 and key in ("dtype",):
        parent[key] = rng.choice(["float64", "complex64", "float16", "int64", "uint8", "<f4", "", "bool"])
    elif op == 3 and key in ("shape", "index"):
        parent[key] = rng.choice([[-1, 3], [2**40, 3], [3.5], [], [1] * 9, -1, 2**31, True, None, [0, 3]])
    else:
        parent[key] = random_json(rng)
    return obj


def _textual(rng: random.Random, frame: bytes) -> bytes:
    """Byte-level damage to a JSON frame: flips, cuts, NaN literals, duplicate keys, deep nesting."""
    op = rng.randrange(6)
    if op == 0 and frame:
        i = rng.randrange(len(frame))
        return frame[:i] + bytes([rng.randrange(256)]) + frame[i + 1:]
    if op == 1:
        return frame[: rng.randrange(len(frame) + 1)]
    if op == 2:
        return frame.replace(b"1.0", b"NaN", 1).replace(b"0.01", b"1e999", 1)
    if op == 3 and frame.startswith(b"{") and len(frame) > 2:
        first = frame[1:].split(b",", 1)[0]
        return b"{" + first + b"," + frame[1:]
    if op == 4:
        return b"[" * 100_000 + b"]" * 100_000
    return frame + rng.choice([b" ", b"\x00", b"}", b"garbage"])


def _base_requests(rng: random.Random) -> list:
    wire = {k: m.Array(v.dtype.name, v.shape, np.ascontiguousarray(v)) for k, v in ARRAYS.items()}
    texture = m.Submit("texture", params("toy", steps=1, texture_size=64, render_size=16), wire)
    return [texture, texture, texture, m.Ping(), m.Hello("fuzz", "1"), m.Status(), m.Cancel(codec.new_id())]


def mutated_frames(rng: random.Random) -> list[bytes]:
    message = rng.choice(_base_requests(rng))
    frames, _ = codec.encode(message, token=TOKEN, session="fuzz-session-000000-" + str(rng.randrange(4)))
    frames = [bytes(memoryview(f)) for f in frames]
    for _ in range(rng.randrange(1, 4)):
        target = rng.randrange(10)
        if target < 7 and len(frames) >= 2:
            i = 0 if target < 3 else 1
            try:
                obj = json.loads(frames[i])
            except (ValueError, RecursionError):  # already damaged by an earlier mutation
                continue
            frames[i] = json.dumps(_mutate_json(rng, obj)).encode()
        elif target == 7 and frames:
            i = rng.randrange(len(frames))
            frames[i] = _textual(rng, frames[i])
        elif target == 8 and len(frames) > 2:
            i = rng.randrange(2, len(frames))
            frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)]
        else:
            op = rng.randrange(4)
            if op == 0 and frames:
                frames.pop(rng.randrange(len(frames)))
            elif op == 1:
                frames.insert(rng.randrange(len(frames) + 1), os.urandom(rng.randrange(64)))
            elif op == 2 and frames:
                frames.append(frames[rng.randrange(len(frames))])
            else:
                rng.shuffle(frames)
    return frames


def _would_stop_the_engine(frames: list[bytes]) -> bool:
    try:
        return json.loads(frames[0]).get("msg_type") in NEVER_SENT
    except Exception:  # noqa: BLE001 - not decodable: harmless
        return False


def test_message_fuzz_gets_clean_replies_and_the_engine_keeps_answering(server):
    rng = random.Random(SEED)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    codes: dict[str, int] = {}
    accepted = 0
    started = time.monotonic()

    def drain(wait_ms: int = 0) -> list:
        nonlocal accepted
        got = []
        while sock.poll(wait_ms):
            wait_ms = 0
            header, reply = codec.decode(sock.recv_multipart(), REPLY_LIMITS)
            assert_clean(reply)
            if isinstance(reply, m.ErrorReply):
                assert reply.code != ErrorCode.INTERNAL.value, reply
                codes[reply.code] = codes.get(reply.code, 0) + 1
            if isinstance(reply, m.Accepted):  # a mutation that is still a valid job: cancel it at once
                accepted += 1
                frames, _ = codec.encode(m.Cancel(reply.job_id), token=TOKEN, session=_session_of(reply))
                sock.send_multipart(frames)
            got.append((header, reply))
        return got

    sessions: dict[str, str] = {}

    def _session_of(reply) -> str:
        return sessions.get(reply.job_id, "")

    try:
        for i in range(MESSAGES):
            frames = mutated_frames(rng)
            if not frames or _would_stop_the_engine(frames):
                continue
            try:
                header = json.loads(frames[0])
                if isinstance(header, dict) and isinstance(header.get("msg_id"), str):
                    sessions[header["msg_id"]] = header.get("session") if isinstance(
                        header.get("session"), str) else ""
            except Exception:  # noqa: BLE001
                pass
            sock.send_multipart(frames)
            drain()
            if (i + 1) % PING_EVERY == 0:
                ping, _ = codec.encode(m.Ping(), token=TOKEN)
                ping_id = json.loads(bytes(memoryview(ping[0])))["msg_id"]
                sock.send_multipart(ping)
                deadline = time.monotonic() + 30
                while not any(h.parent_id == ping_id and isinstance(r, m.Pong) for h, r in drain(100)):
                    assert time.monotonic() < deadline, f"no pong after {i + 1} messages"
        drain(500)
    finally:
        sock.close(0)
        ctx.term()
    took = time.monotonic() - started
    print(f"\n{MESSAGES} mutated messages in {took:.1f} s; {accepted} accepted (cancelled); replies {codes}")
    assert len(codes) >= 6, codes  # the mutations reach many different checks
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=30)
        deadline = time.monotonic() + 60
        while client.status().current is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)


# --- job level -------------------------------------------------------------------------------------------------

# per field: (valid values, extreme-but-valid included, that keep a job to a fraction of a second; out-of-range
# and wrong-type values)
CHOICES = {
    "prompt": (["a red sphere", "a blue striped cube", "ünïcødé words", "a" * 1000],
               ["", "   ", "x" * 1001, "a red \ud800 sphere", 3, None, "a\x07b"]),
    "negative_prompt": (["", "a blue cube"], [5, ["x"], "\x07"]),
    "model": (["toy"], ["", "no/such-model", 7, "x" * 600]),
    "controlnets": ([[]], [["depth", "depth"], ["fancy"], "depth", [{}], [None], ["depth"]]),
    "controlnet_scales": ([[]], [[1.0], [5.0], ["1"], [1e308]]),
    "quality": (["fast", "balanced", "best"], ["ultra", 1]),
    "guidance": (["auto", "csd-toy", "csd", "sds", "sds-sd", "csd-edit", "csd-if"], ["magic", 0]),
    "steps": ([1, 2, 3], [0, -1, 100_001, "2", 1.5, True, [1]]),
    "batch_size": ([1, 2], [0, 65, "1", 2.0]),
    "learning_rate": ([0.01, 1.0, 1e-6], [0.0, -1.0, 2.0, 1e308, "0.1", None]),
    "texture_size": ([64, 96], [63, 4097, 0, "64", 64.5]),
    "render_size": ([16, 32, 17], [15, 2049, -16, [16]]),
    "seed": ([0, 7, 2**63 - 1], [2**63, -1, 1.5, "0"]),
    "background": (["random", "white", "black", "gray"], ["plaid", None]),
    "elevation_range": ([[-10, 45], [90, 90], [-90, -90], [0, 0]], [[45, -10], [-91, 0], [0], "x", [0, 1e308]]),
    "azimuth_range": ([[-180, 180], [0, 0], [-360, 360]], [[361, 0], [None, 1]]),
    "distance_range": ([[1.5, 2.0], [0.1, 0.1], [100, 100]], [[0.05, 1], [2, 1]]),
    "fov_range": ([[40, 60], [5, 5], [150, 150]], [[1, 10], [60, 40]]),
    "camera_jitter": ([0.05, 0.0, 1.0], [1.5, -0.1]),
    "progress_every": ([1, 10, 100_000], [0, 100_001]),
    "preview_size": ([16, 64], [15, 1025]),
    "device": (["auto", "cpu"], ["cuda:7", "tpu", ""]),
    "return_partial": ([False, True], ["yes", 1]),
}
# guidance_overrides: keys of the CSD/SDS configs (and two unknown ones); values of every type and size
OVERRIDE_VALID = {
    "omega1": [1.0, 0.0, -1.0, 1e30, -1e30, 1e-30, [0, 0.0, 1.0, 2], [0, 1e30, -1e30, 1]],
    "omega2": [0.0, 1.0, 1e30, [0.98, 0.5, 2]],
    "t_min": [0.02, 0.0, 0.5], "t_max": [0.98, 1.0, 0.5, [2, 0.98, 0.5, 3]],
    "weighting": ["uniform", "sds", "fantasia3d"], "grad_mode": ["none", "unit_l2"],
    "grad_clip": [None, 1e-30, 1e30], "negative_prompt": ["", "a green cube"],
    "reference_steps": [1, 10_000, 2**62], "name": ["mine"], "guidance_scale": [1.0, 101.0, 1e30],
}
OVERRIDE_INVALID = [[2, 1, 0, 1], [1, 2], "abc", "clamp", None, True, ["x"], {"a": 1}, -5, "\ud800", 1e308,
                    [[0]], ""]


def random_job(rng: random.Random) -> dict:
    """Texture params: one to three fields drawn from CHOICES (cost-driving fields are always given)."""
    p = {"prompt": "a red sphere", "model": "toy", "steps": 1, "texture_size": 64, "render_size": 16,
         "batch_size": 1, "preview_size": 16, "progress_every": 1}
    for name in rng.sample(sorted(CHOICES), rng.randrange(1, 4)):
        valid, invalid = CHOICES[name]
        p[name] = rng.choice(valid if rng.random() < 0.6 else invalid)
    if rng.random() < 0.6:
        overrides = {}
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice(sorted(OVERRIDE_VALID) + ["sharpness", ""])
            valid = OVERRIDE_VALID.get(key)
            overrides[key] = rng.choice(valid) if valid and rng.random() < 0.6 else rng.choice(OVERRIDE_INVALID)
        p["guidance_overrides"] = overrides
    elif rng.random() < 0.1:
        p["guidance_overrides"] = rng.choice([[], "omega1", None, 3])
    return p


def test_job_fuzz_every_job_ends_in_a_result_or_a_specific_error(server):
    rng = random.Random(SEED + 1)
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=30)
        for i in range(JOBS):
            p = random_job(rng)
            job = client.submit("texture", p, ARRAYS)
            deadline = time.monotonic() + 120
            final = None
            while final is None:
                for event in client.poll():
                    if getattr(event, "job_id", None) != job:
                        continue
                    assert_clean(event)
                    if isinstance(event, (JobResult, m.ErrorReply, m.Cancelled)):
                        final = event
                assert time.monotonic() < deadline, f"job {i} never ended: {p!r:.300}"
                time.sleep(0.002)
            if isinstance(final, JobResult):
                outcome = "result"
                assert np.isfinite(final.arrays["texture"]).all(), p
            else:
                assert isinstance(final, m.ErrorReply), (p, final)
                assert final.code in JOB_CODES and final.message, f"{json.dumps(p)} -> {final.code}: {final.message}"
                outcome = final.code
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert client.connect(timeout_s=10)  # still serving
    print(f"\n{JOBS} random jobs in {time.monotonic() - started:.1f} s: {outcomes}")
    assert outcomes.get("result", 0) >= 5 and len(outcomes) >= 2, outcomes
