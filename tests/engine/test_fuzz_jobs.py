"""Bounded, seeded fuzzing of generate and edit jobs and of batch lines (issue 22; test_fuzz.py does messages and
texture jobs). Random generate and edit parameters (valid values kept cheap, wrong types and out-of-range values,
edit textures of every dtype and odd shapes) must each end in a result or a specific error code, never `internal`,
with the engine serving on; random batch lines must each become a job or a `BatchFileError` naming the line,
never another exception. `CSD_FUZZ_SEED` picks another seed; `CSD_FUZZ_SCALE` multiplies the counts."""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import pytest
from server_jobs import EDIT, GENERATE, edit_arrays
from test_fuzz import OVERRIDE_INVALID, STRINGS, random_json
from test_server_hardening import TOKEN, _start, _stop, assert_clean

from csd_blender.link.client import EngineClient, JobResult
from csd_blender.protocol import messages as m
from csd_blender.protocol.errors import ErrorCode, ProtocolError

SEED = int(os.environ.get("CSD_FUZZ_SEED", "22"))
SCALE = float(os.environ.get("CSD_FUZZ_SCALE", "1"))
JOBS = int(8 * SCALE)
LINES = int(300 * SCALE)
JOB_CODES = {c.value for c in ErrorCode} - {ErrorCode.INTERNAL.value, ErrorCode.ENGINE_DIED.value}

GENERATE_CHOICES = {
    "prompt": (["a red cube", "a blue striped sphere", "A red cube."], ["", "a red cubee", 3, None, "x" * 1001]),
    "negative_prompt": (["", "a blue cube"], ["a red cube", 5, "\x07"]),
    "refine": (["none", "texture", "geometry"], ["all", 1]),
    "refine_model": ([""], ["/no/such/model", 3]),
    "steps_coarse": ([1, 2], [0, -1, 10**9, 2.5, "3"]),
    "face_budget": ([500, 600], [1, 10**9, None]),
    "isosurface_threshold": ([0.5, 1.0, 1e6], [-1.0, "x", float("inf")]),
    "quality": (["fast", "best"], ["ultra", None]),
}
EDIT_CHOICES = {
    "target_prompt": (["a blue striped sphere", "a green sphere"], ["", "a bleu sphere", "a red striped sphere!"]),
    "strength": ([0.0, 1.0, 4.0], [-1.0, 4.5, "1", None]),
    "omega2": ([0.0, 1.0], [9.0, True]),
    "preserve": ([0.0, 10.0], [-0.1, 11.0]),
    "guidance": (["csd-edit", "csd"], ["sds", "auto", "nope", ""]),
    "fit_psnr": ([10.0, 60.0], [5.0, 70.0]),
    "texture_size": ([64], [63, 5000, 0]),
}


def _bend(rng: random.Random, base: dict, choices: dict) -> dict:
    p = dict(base)
    for name in rng.sample(sorted(choices), rng.randrange(1, 4)):
        valid, invalid = choices[name]
        p[name] = rng.choice(valid if rng.random() < 0.6 else invalid)
    if rng.random() < 0.3:
        p["guidance_overrides"] = {rng.choice(["omega2", "t_max", "nope"]): rng.choice(OVERRIDE_INVALID + [0.5])}
    return p


def _texture(rng: random.Random) -> np.ndarray:
    base = edit_arrays()["texture"]
    kind = rng.randrange(6)
    if kind == 0:
        return np.round(base * 255).astype(np.uint8)
    if kind == 1:
        return base.astype(np.float16)
    if kind == 2:
        return base[..., :1]  # one channel: refused
    if kind == 3:
        return np.full((4, 4, 3), 0.5, np.float32)  # under the side limit
    if kind == 4:
        bad = base.copy()
        bad[0, 0, 0] = np.nan
        return bad
    return base.astype(np.int32)  # a dtype the edit texture does not take


@pytest.fixture(scope="module")
def server():
    started = _start()
    yield started[0]
    _stop(*started)


def _run(client: EngineClient, task: str, p: dict, arrays: dict) -> str:
    try:
        job = client.submit(task, p, arrays)
    except ProtocolError as exc:  # refused by the client before sending (too large, a dtype it cannot send)
        assert exc.code.value in JOB_CODES, exc
        return f"client:{exc.code.value}"
    deadline = time.monotonic() + 300
    while True:
        for event in client.poll():
            if getattr(event, "job_id", None) != job:
                continue
            assert_clean(event)
            if isinstance(event, JobResult):
                return "result"
            if isinstance(event, m.ErrorReply):
                assert event.code in JOB_CODES and event.message, f"{json.dumps(p)[:300]} -> {event}"
                return event.code
            assert not isinstance(event, m.Cancelled), p
        assert time.monotonic() < deadline, f"{task} job never ended: {json.dumps(p)[:300]}"
        time.sleep(0.005)


def test_generate_and_edit_fuzz_every_job_ends_in_a_result_or_a_specific_error(server):
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    with EngineClient(server.endpoint, TOKEN) as client:
        client.connect(timeout_s=30)
        for _ in range(JOBS):
            p = _bend(rng, {**GENERATE, "refine": "none", "steps_coarse": 2}, GENERATE_CHOICES)
            outcome = _run(client, "generate", p, {})
            outcomes[f"generate:{outcome}"] = outcomes.get(f"generate:{outcome}", 0) + 1
            arrays = {**edit_arrays(), "texture": _texture(rng)}
            outcome = _run(client, "edit", _bend(rng, EDIT, EDIT_CHOICES), arrays)
            outcomes[f"edit:{outcome}"] = outcomes.get(f"edit:{outcome}", 0) + 1
        assert client.connect(timeout_s=10)
    print(f"\n{2 * JOBS} random generate/edit jobs: {outcomes}")
    assert len(outcomes) >= 4, outcomes


def _line(rng: random.Random) -> str:
    task = rng.choice(["texture", "edit", "generate", "nope", None])
    fields = {"texture": {"mesh": "ball.obj", "prompt": "a red sphere", "steps": 3},
              "edit": {"mesh": "ball.obj", "target": "a blue sphere", "edit": "a red sphere"},
              "generate": {"prompt": "a red cube", "steps-coarse": 2}}.get(task, {})
    line = {"task": task, **fields}
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice([*line, *STRINGS[:6], "out", "seed", "texture_size", "device", "quality", "cameras"])
        line[key] = random_json(rng) if rng.random() < 0.5 else rng.choice([1, "cpu", 64, "fast", True, None])
    text = json.dumps(line)
    op = rng.randrange(6)
    if op == 0:
        text = text.replace('{"task"', '{"task": "texture", "task"', 1)  # a key given twice
    elif op == 1:
        text = text[: rng.randrange(len(text) + 1)]
    elif op == 2:
        text = json.dumps([line])
    return text


def test_batch_line_fuzz_every_line_is_a_job_or_names_its_line(tmp_path):
    import trimesh

    from engine.batch.jobs import BatchFileError, command_parser, parse_line
    from engine.tasks import load_registries

    load_registries()
    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "ball.obj")
    rng = random.Random(SEED + 1)
    parser = command_parser()
    kinds: dict[str, int] = {}
    started = time.monotonic()
    for i in range(LINES):
        text = _line(rng)
        try:
            job = parse_line(i + 1, text, parser, tmp_path)
            kinds["job"] = kinds.get("job", 0) + 1
            assert job.job_id.startswith(job.task)
        except BatchFileError as exc:
            assert exc.line == i + 1 and str(exc).startswith(f"line {i + 1}: "), exc
            kinds["refused"] = kinds.get("refused", 0) + 1
    print(f"\n{LINES} random batch lines in {time.monotonic() - started:.1f} s: {kinds}")
    assert kinds.get("job", 0) >= 5 and kinds.get("refused", 0) >= 50, kinds
