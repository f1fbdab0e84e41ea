"""Malformed and invalid requests to a real engine subprocess each earn their error code, and neither they nor
twenty jobs after them nor a hundred rejected large uploads grow the engine's memory.

Raw frames from a DEALER socket; the engine is this module's own (tests/engine/conftest.py).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zmq
from server_jobs import ARRAYS, EDIT, FACES, GENERATE, VERTS, edit_arrays, params, rss_bytes

from csd_blender.protocol import codec
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode
from csd_blender.protocol.limits import REPLY_LIMITS

# --- malformed and invalid requests (raw frames from a DEALER) ----------------------------------------------


def _submit_frames(prior_dir: str, token: str, *, task="texture", arrays=None, **over) -> list:
    wire = {k: m.Array(v.dtype.name, v.shape, np.ascontiguousarray(v)) for k, v in (arrays or ARRAYS).items()}
    frames, _ = codec.encode(m.Submit(task, params(prior_dir, **over), wire), token=token)
    return [bytes(memoryview(f)) for f in frames]


def _edit_content(frames: list, fn) -> list:
    content = json.loads(frames[1])
    fn(content)
    return [frames[0], json.dumps(content).encode(), *frames[2:]]


def _edit_header(frames: list, **over) -> list:
    header = json.loads(frames[0])
    header.update(over)
    return [json.dumps(header).encode(), *frames[1:]]


def _with_array(name: str, value: np.ndarray) -> dict:
    return {**ARRAYS, name: value}


def _nan_vertices():
    v = VERTS.copy()
    v[3, 1] = np.nan
    return v


def _set(path: list, value):
    def fn(content):
        target = content
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return fn


def _bad_utf8_prompt(frames):
    return [frames[0], frames[1].replace(b'"a red sphere"', b'"a red \xff\xfe sphere"'), *frames[2:]]


def _generate_frames(token: str, arrays=None, **over) -> list:
    """A generate submit (no arrays unless given) with GENERATE's parameters changed by `over`."""
    wire = {k: m.Array(v.dtype.name, v.shape, np.ascontiguousarray(v)) for k, v in (arrays or {}).items()}
    frames, _ = codec.encode(m.Submit("generate", {**GENERATE, **over}, wire), token=token)
    return [bytes(memoryview(f)) for f in frames]


def _edit_frames(token: str, arrays: dict | None = None, drop: tuple = (), **over) -> list:
    """An edit submit: a striped UV sphere with its texture, EDIT's parameters changed by `over`, arrays replaced
    by `arrays` and those named in `drop` left out."""
    wire_arrays = {k: v for k, v in {**edit_arrays(), **(arrays or {})}.items() if k not in drop}
    wire = {k: m.Array(v.dtype.name, v.shape, np.ascontiguousarray(v)) for k, v in wire_arrays.items()}
    frames, _ = codec.encode(m.Submit("edit", {**EDIT, **over}, wire), token=token)
    return [bytes(memoryview(f)) for f in frames]


def _nan_texture() -> np.ndarray:
    texture = edit_arrays()["texture"].copy()
    texture[3, 4, 1] = np.nan
    return texture


FIVE_M_FACES = np.zeros((5_000_000, 3), np.int32)

CASES = {  # name -> (frames builder(prior_dir, token), expected code)
    "random_bytes": (lambda d, t: [os.urandom(64)], ErrorCode.MALFORMED_MESSAGE),
    "random_two_frames": (lambda d, t: [os.urandom(32), os.urandom(32)], ErrorCode.MALFORMED_MESSAGE),
    "truncated_multipart": (lambda d, t: _submit_frames(d, t)[:1], ErrorCode.MALFORMED_MESSAGE),
    "header_not_object": (lambda d, t: [b"[1,2,3]", b"{}"], ErrorCode.MALFORMED_MESSAGE),
    "header_without_msg_id": (
        lambda d, t: [json.dumps({"msg_type": "ping", "version": "1.0", "token": t}).encode(), b"{}"],
        ErrorCode.MALFORMED_MESSAGE,
    ),
    "missing_token": (lambda d, t: _submit_frames(d, ""), ErrorCode.UNAUTHORIZED),
    "wrong_token": (
        lambda d, t: _submit_frames(d, t[:-1] + ("0" if t[-1] != "0" else "1")),
        ErrorCode.UNAUTHORIZED,
    ),
    "protocol_major_2": (
        lambda d, t: _edit_header(_submit_frames(d, t), version="2.0"),
        ErrorCode.PROTOCOL_MISMATCH,
    ),
    "unknown_msg_type": (
        lambda d, t: _edit_header(_submit_frames(d, t), msg_type="format_disk"),
        ErrorCode.UNKNOWN_MESSAGE,
    ),
    "reply_type_as_request": (lambda d, t: codec.encode(m.Pong(), token=t)[0], ErrorCode.UNKNOWN_MESSAGE),
    "oversize_json": (
        lambda d, t: _edit_content(
            _submit_frames(d, t), _set(["params", "negative_prompt"], "x" * 2_000_000)
        ),
        ErrorCode.MESSAGE_TOO_LARGE,
    ),
    "too_many_buffers": (lambda d, t: _submit_frames(d, t) + [b"\0" * 4] * 20, ErrorCode.MESSAGE_TOO_LARGE),
    "nan_json_constant": (
        lambda d, t: [
            _submit_frames(d, t)[0],
            _submit_frames(d, t)[1].replace(b'"seed":0', b'"seed":NaN'),
            *_submit_frames(d, t)[2:],
        ],
        ErrorCode.MALFORMED_MESSAGE,
    ),
    "nan_vertices": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("vertices", _nan_vertices())),
        ErrorCode.INVALID_MESH,
    ),
    "negative_index": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("faces", FACES - 1)),
        ErrorCode.INVALID_MESH,
    ),
    "index_out_of_range": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("faces", FACES + len(VERTS))),
        ErrorCode.INVALID_MESH,
    ),
    "zero_faces": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("faces", np.zeros((0, 3), np.int32))),
        ErrorCode.INVALID_MESH,
    ),
    "five_million_faces": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("faces", FIVE_M_FACES)),
        ErrorCode.MESH_TOO_LARGE,
    ),
    "missing_faces": (lambda d, t: _submit_frames(d, t, arrays={"vertices": VERTS}), ErrorCode.BAD_ARRAY),
    "vertices_wrong_width": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("vertices", VERTS[:, :2].copy())),
        ErrorCode.BAD_ARRAY,
    ),
    "faces_as_float32": (
        lambda d, t: _submit_frames(d, t, arrays=_with_array("faces", FACES.astype(np.float32))),
        ErrorCode.BAD_ARRAY,
    ),
    "dtype_header_vs_buffer": (
        lambda d, t: _edit_content(_submit_frames(d, t), _set(["arrays", "vertices", "dtype"], "float16")),
        ErrorCode.BAD_ARRAY,
    ),
    "dtype_not_allowed": (
        lambda d, t: _edit_content(_submit_frames(d, t), _set(["arrays", "vertices", "dtype"], "complex64")),
        ErrorCode.BAD_ARRAY,
    ),
    "buffer_wrong_length": (
        lambda d, t: _submit_frames(d, t)[:2] + [_submit_frames(d, t)[2][:-4], _submit_frames(d, t)[3]],
        ErrorCode.BAD_ARRAY,
    ),
    "buffer_count_mismatch": (lambda d, t: _submit_frames(d, t) + [b"\0" * 12], ErrorCode.MALFORMED_MESSAGE),
    "uvs_face_count_mismatch": (
        lambda d, t: _submit_frames(
            d, t, arrays=_with_array("uvs", np.zeros((len(FACES) - 1, 3, 2), np.float32))
        ),
        ErrorCode.BAD_ARRAY,
    ),
    "texture_size_100000": (lambda d, t: _submit_frames(d, t, texture_size=100000), ErrorCode.BAD_REQUEST),
    "steps_zero": (lambda d, t: _submit_frames(d, t, steps=0), ErrorCode.BAD_REQUEST),
    "steps_as_string": (lambda d, t: _submit_frames(d, t, steps="many"), ErrorCode.BAD_REQUEST),
    "unknown_field": (lambda d, t: _submit_frames(d, t, sharpness=11), ErrorCode.BAD_REQUEST),
    "params_not_object": (
        lambda d, t: _edit_content(_submit_frames(d, t), _set(["params"], [1, 2])),
        ErrorCode.MALFORMED_MESSAGE,
    ),
    "unknown_task": (lambda d, t: _submit_frames(d, t, task="world_domination"), ErrorCode.UNKNOWN_TASK),
    "empty_prompt": (lambda d, t: _submit_frames(d, t, prompt="   "), ErrorCode.BAD_PROMPT),
    "prompt_10kB": (lambda d, t: _submit_frames(d, t, prompt="red " * 2500), ErrorCode.BAD_PROMPT),
    "prompt_not_utf8_bytes": (
        lambda d, t: _bad_utf8_prompt(_submit_frames(d, t)),
        ErrorCode.MALFORMED_MESSAGE,
    ),
    "prompt_lone_surrogate": (
        lambda d, t: _submit_frames(d, t, prompt="a red \udcff sphere"),
        ErrorCode.BAD_PROMPT,
    ),
    "cancel_unknown_job": (
        lambda d, t: codec.encode(m.Cancel("no-such-job"), token=t)[0],
        ErrorCode.UNKNOWN_JOB,
    ),
    # generate (GenerateParams)
    "generate_empty_prompt": (lambda d, t: _generate_frames(t, prompt="  "), ErrorCode.BAD_PROMPT),
    "generate_unknown_refine": (lambda d, t: _generate_frames(t, refine="smooth"), ErrorCode.BAD_REQUEST),
    "generate_zero_coarse_steps": (lambda d, t: _generate_frames(t, steps_coarse=0), ErrorCode.BAD_REQUEST),
    "generate_face_budget_tiny": (lambda d, t: _generate_frames(t, face_budget=3), ErrorCode.BAD_REQUEST),
    "generate_tet_resolution_huge": (lambda d, t: _generate_frames(t, tet_resolution=4096), ErrorCode.BAD_REQUEST),
    "generate_size_negative": (lambda d, t: _generate_frames(t, size=-1.0), ErrorCode.BAD_REQUEST),
    "generate_threshold_string": (lambda d, t: _generate_frames(t, isosurface_threshold="ten"),
                                  ErrorCode.BAD_REQUEST),
    "generate_unknown_field": (lambda d, t: _generate_frames(t, colour="red"), ErrorCode.BAD_REQUEST),
    "generate_with_arrays": (
        lambda d, t: _generate_frames(t, arrays={"vertices": np.zeros((3, 3), np.float32)}),
        ErrorCode.BAD_ARRAY,
    ),
    "generate_negative_seed": (lambda d, t: _generate_frames(t, seed=-5), ErrorCode.BAD_REQUEST),
    # edit (EditParams, texture and UVs)
    "edit_no_texture": (lambda d, t: _edit_frames(t, drop=("texture",)), ErrorCode.NO_TEXTURE),
    "edit_no_uvs": (lambda d, t: _edit_frames(t, drop=("uvs",)), ErrorCode.NO_UVS),
    "edit_uvs_outside_texture": (
        lambda d, t: _edit_frames(t, arrays={"uvs": edit_arrays()["uvs"] + 2.0}), ErrorCode.UV_TEXTURE_MISMATCH),
    "edit_uvs_without_area": (
        lambda d, t: _edit_frames(t, arrays={"uvs": np.zeros_like(edit_arrays()["uvs"])}),
        ErrorCode.UV_TEXTURE_MISMATCH,
    ),
    "edit_identical_prompts": (
        lambda d, t: _edit_frames(t, edit_prompt=EDIT["target_prompt"]), ErrorCode.BAD_PROMPT),
    "edit_missing_edit_prompt": (
        lambda d, t: _edit_content(_edit_frames(t), lambda c: c["params"].pop("edit_prompt")), ErrorCode.BAD_REQUEST),
    "edit_strength_out_of_range": (lambda d, t: _edit_frames(t, strength=7.5), ErrorCode.BAD_REQUEST),
    "edit_preserve_negative": (lambda d, t: _edit_frames(t, preserve=-0.5), ErrorCode.BAD_REQUEST),
    "edit_texture_two_channels": (
        lambda d, t: _edit_frames(t, arrays={"texture": np.zeros((32, 32, 2), np.float32)}), ErrorCode.BAD_ARRAY),
    "edit_texture_nan": (lambda d, t: _edit_frames(t, arrays={"texture": _nan_texture()}), ErrorCode.BAD_ARRAY),
    "edit_face_mask_empty": (
        lambda d, t: _edit_frames(t, arrays={"face_mask": np.zeros(len(edit_arrays()["faces"]), np.uint8)}),
        ErrorCode.BAD_MASK),
}


@pytest.fixture(scope="module")
def dealer(engine):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)  # a missing reply fails the case (zmq.Again) instead of hanging
    sock.connect(engine.endpoint)
    yield sock
    sock.close(0)
    ctx.term()


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_gets_its_error_code(engine, dealer, prior_dir, case):
    build, code = CASES[case]
    frames = build(prior_dir, engine.token)
    sent_header = None
    try:
        sent_header = json.loads(frames[0])
    except (ValueError, UnicodeDecodeError):
        pass
    dealer.send_multipart(frames)
    assert dealer.poll(30_000), f"no reply to {case}"
    header, reply = codec.decode(dealer.recv_multipart(), REPLY_LIMITS)
    assert isinstance(reply, m.ErrorReply), reply
    assert reply.code == code.value, (case, reply)
    assert reply.message and reply.traceback == ""
    if isinstance(sent_header, dict) and "msg_id" in sent_header:
        assert header.parent_id == sent_header["msg_id"]
        decodable = code not in (
            ErrorCode.UNAUTHORIZED,
            ErrorCode.MALFORMED_MESSAGE,
            ErrorCode.MESSAGE_TOO_LARGE,
        )
        if sent_header.get("msg_type") == "submit" and decodable:
            assert reply.job_id == sent_header["msg_id"]


def test_the_table_covers_every_code_a_bad_request_can_earn():
    """Each error code the engine gives a bad request (rather than a lifecycle event or a resource problem) has at
    least one case in the table above, so a code that stops being reachable, or a new one nobody tests, fails."""
    request_codes = {
        ErrorCode.MALFORMED_MESSAGE, ErrorCode.PROTOCOL_MISMATCH, ErrorCode.UNAUTHORIZED, ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.UNKNOWN_MESSAGE, ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TASK, ErrorCode.BAD_ARRAY,
        ErrorCode.INVALID_MESH, ErrorCode.MESH_TOO_LARGE, ErrorCode.BAD_PROMPT, ErrorCode.NO_TEXTURE,
        ErrorCode.NO_UVS, ErrorCode.UV_TEXTURE_MISMATCH, ErrorCode.UNKNOWN_JOB, ErrorCode.BAD_MASK,
    }
    others = {ErrorCode.MODEL_MISSING, ErrorCode.OUT_OF_MEMORY, ErrorCode.CANCELLED, ErrorCode.ENGINE_DIED,
              ErrorCode.ENGINE_BUSY, ErrorCode.INTERNAL}   # tested where they arise, not by a malformed request
    assert request_codes | others == set(ErrorCode), "a new error code: add it to one of the two sets"
    covered = {code for _, code in CASES.values()}
    assert request_codes <= covered, f"no malformed-input case earns {sorted(c.value for c in request_codes - covered)}"


# --- memory -------------------------------------------------------------------------------------------------


def test_after_malformed_input_twenty_jobs_run_without_growing_memory(engine, client, prior_dir):
    status = client.status()  # the malformed table above left nothing behind
    assert status.current is None and status.queue == []
    rss = []
    for i in range(20):
        result = client.wait(
            client.submit("texture", params(prior_dir, steps=2, seed=i, progress_every=100), ARRAYS),
            timeout_s=120,
        )
        assert result.meta["stats"]["steps_run"] == 2
        assert client.status().current is None  # memory was trimmed before the result was sent
        rss.append(rss_bytes(engine.pid))
    growth = (rss[-1] - rss[1]) / rss[1]
    assert growth < 0.10, " ".join(f"{r / 2**20:.0f}" for r in rss) + " MiB"


def _rejected_arrays(i: int, rng: np.random.Generator) -> dict:
    """Arrays of 12-24 MB that fail validation four different ways (NaN vertex, index out of range, UVs for the
    wrong face count, a rig with all-zero intrinsics)."""
    n = int(rng.integers(1_000_000, 2_000_000))
    kind = i % 4
    if kind == 0:
        vertices = np.zeros((n, 3), np.float32)
        vertices[-1, 0] = np.nan
        return {"vertices": vertices, "faces": FACES}
    if kind == 1:
        faces = np.zeros((n // 2, 3), np.int32)
        faces[-1, 0] = n
        return {"vertices": VERTS, "faces": faces}
    if kind == 2:
        return {**ARRAYS, "uvs": np.zeros((n // 3, 3, 2), np.float32)}
    return {"vertices": np.zeros((n, 3), np.float32), "faces": FACES, "c2w": np.tile(np.eye(4, dtype=np.float32),
            (3, 1, 1)), "intrinsics": np.zeros((3, 6), np.float32)}


def test_rejected_large_submits_leave_no_memory_behind(engine, dealer, prior_dir):
    """100 rejected submits of 12-24 MB, five in flight at a time, grow the engine's RSS by less than 10 %
    (before issue 15 the same load took it from 395 to 827 MiB: every rejected upload was copied first)."""
    rng = np.random.default_rng(15)

    def burst(k: int) -> None:
        for j in range(5):
            dealer.send_multipart(_submit_frames(prior_dir, engine.token, arrays=_rejected_arrays(5 * k + j, rng)))
        for _ in range(5):
            assert dealer.poll(60_000)
            _, reply = codec.decode(dealer.recv_multipart(), REPLY_LIMITS)
            assert isinstance(reply, m.ErrorReply) and reply.traceback == "", reply
            assert reply.code in (ErrorCode.INVALID_MESH.value, ErrorCode.BAD_ARRAY.value,
                                  ErrorCode.BAD_REQUEST.value), reply

    for k in range(4):  # the first big messages size the allocator's pools
        burst(k)
    before = rss_bytes(engine.pid)
    for k in range(20):
        burst(k)
    after = rss_bytes(engine.pid)
    print(f"RSS after 100 rejected 12-24 MB submits: {before / 2**20:.0f} -> {after / 2**20:.0f} MiB")
    assert (after - before) / before < 0.10, f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB"

