"""Issue 22, findings 7, 8 and 10: every wrong error gets its own code and field, and every refusal that needs no
model comes at the door (before `accepted`, before a batch starts), never when the job's turn comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.params import EditParams
from engine.registry import TASKS
from engine.serve.admission import check_params
from engine.serve.local_worker import is_out_of_memory, oom_error

ROOT = Path(__file__).resolve().parents[2]
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:116] data. DefaultCPUAllocator: can't allocate memory: you tried to "
           "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)")
EDIT = {"target_prompt": "a blue striped sphere", "edit_prompt": "a red striped sphere", "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def registries():
    from engine.tasks import load_registries

    load_registries()


def _refused(task: str, params: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        check_params(TASKS.get(task), params)
    return info.value


# --- finding 7 ---------------------------------------------------------------------------------------------------


def test_cpu_out_of_memory_is_out_of_memory_with_the_settings_to_lower():
    assert is_out_of_memory(RuntimeError(CPU_OOM))
    error = oom_error(EditParams(**EDIT), "cpu", "edit")
    assert error.code == ErrorCode.OUT_OF_MEMORY and "batch_size" in error.message


def test_a_missing_refine_model_is_reported_as_refine_model():
    error = _refused("generate", {"prompt": "a red cube", "refine_model": "/no/such/refine-model"})
    assert error.code == ErrorCode.MODEL_MISSING and error.field == "refine_model", error
    assert error.message.startswith("refine_model:")


def test_an_sds_edit_names_the_guidance_not_omega1():
    from engine.tasks.edit import _build_guidance

    with pytest.raises(ProtocolError) as info:
        _build_guidance(EditParams(**EDIT, guidance="sds"), 100)
    assert info.value.field == "guidance" and "omega1" not in info.value.message, info.value


def _edit_cli(tmp_path: Path, texture: str) -> subprocess.CompletedProcess:
    import trimesh

    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "ball.obj")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "engine", "edit", "--mesh", str(tmp_path / "ball.obj"),
                           "--texture", texture, "--target", "a blue sphere", "--edit", "a red sphere", "--out",
                           str(tmp_path / "out"), "--device", "cpu", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("kind", ["missing", "not an image"])
def test_the_edit_command_reports_a_bad_texture_file_in_one_line(tmp_path, kind):
    texture = tmp_path / "texture.png"
    if kind == "not an image":
        texture.write_text("this is no PNG")
    proc = _edit_cli(tmp_path, str(texture))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: [no_texture] texture:") and "Traceback" not in proc.stderr, lines


def test_a_batch_records_a_bad_edit_texture_with_its_code_and_field(tmp_path):
    import trimesh

    from engine.batch.driver import run_batch
    from engine.batch.executors import InProcess
    from engine.batch.jobs import read_jobs

    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "ball.obj")
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"task": "edit", "mesh": "ball.obj", "texture": "nowhere.png",
                                                     "target": "a blue sphere", "edit": "a red sphere",
                                                     "device": "cpu"}) + "\n")
    jobs, _ = read_jobs(tmp_path / "jobs.jsonl")
    summary = run_batch(jobs, tmp_path / "out", InProcess(), quiet=True)
    error = summary.jobs[0].error
    assert error["code"] == "no_texture" and error["field"] == "texture", error


# --- finding 8: refused at the door ------------------------------------------------------------------------------


@pytest.mark.parametrize("task, params, field", [
    ("texture", {"prompt": "a red spherr"}, "prompt"),
    ("texture", {"prompt": "a red sphere", "negative_prompt": "blurry"}, "negative_prompt"),
    ("generate", {"prompt": "a red cubee"}, "prompt"),
    ("edit", {**EDIT, "target_prompt": "a bleu striped sphere"}, "target_prompt"),
])
def test_unknown_words_of_the_toy_prior_are_refused_at_the_door(task, params, field):
    error = _refused(task, params)
    assert error.code == ErrorCode.BAD_PROMPT and error.field == field, error
    assert "knows only" in error.message


@pytest.mark.parametrize("model", ["/no/such/model-folder", "no-such-org/no-such-model"])
def test_a_missing_model_is_refused_at_the_door(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    error = _refused("texture", {"prompt": "a red sphere", "model": model})
    assert error.code == ErrorCode.MODEL_MISSING and error.field == "model", error


def test_a_folder_that_is_not_a_model_is_refused_at_the_door(tmp_path):
    error = _refused("texture", {"prompt": "a red sphere", "model": str(tmp_path)})
    assert error.code == ErrorCode.MODEL_MISSING and "model_index.json" in error.message


def test_toy_prompts_the_prior_knows_pass_the_door():
    check_params(TASKS.get("texture"), {"prompt": "A red, striped sphere."})


# --- finding 10 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["texture", "generate"])
def test_a_negative_prompt_equal_to_the_prompt_is_refused(task):
    error = _refused(task, {"prompt": "a red cube", "negative_prompt": "A red cube."})
    assert error.code == ErrorCode.BAD_PROMPT and error.field == "negative_prompt", error


def test_edit_prompts_that_differ_only_by_punctuation_are_refused():
    error = _refused("edit", {**EDIT, "edit_prompt": "a blue, striped sphere!"})
    assert error.code == ErrorCode.BAD_PROMPT and error.field == "edit_prompt", error


def test_a_batch_line_with_a_key_given_twice_is_refused(tmp_path):
    from engine.batch.jobs import BatchFileError, parse_line

    with pytest.raises(BatchFileError, match="duplicate key 'seed'"):
        parse_line(1, '{"task": "generate", "prompt": "a red cube", "seed": 1, "seed": 2}', base=tmp_path)


def test_batch_lines_that_are_the_same_job_are_named(tmp_path):
    from engine.batch.jobs import read_jobs

    line = json.dumps({"task": "generate", "prompt": "a red cube", "seed": 1})
    (tmp_path / "jobs.jsonl").write_text(f"{line}\n{line}\n")
    jobs, notes = read_jobs(tmp_path / "jobs.jsonl")
    assert len(jobs) == 1 and notes and notes[0].line == 2 and "same job as line 1" in str(notes[0])


def test_summary_json_is_as_readable_as_the_results(tmp_path):
    from engine.batch.summary import BatchSummary

    old = os.umask(0o022)
    try:
        BatchSummary("jobs.jsonl", "in-process", 1).write(tmp_path / "summary.json")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644


def test_loading_is_announced_once():
    from collections import deque

    from engine.serve.local_worker import JobRecord, Worker
    from engine.tasks.base import ProgressEvent

    outbox: deque = deque()
    worker = Worker("cpu", outbox)
    record = JobRecord("j", b"", TASKS.get("texture"), None, {})
    progress = worker._progress_fn(record, 0.0)
    progress(ProgressEvent("loading", 0, 0))
    progress(ProgressEvent("loading", 0, 0))
    assert [o.message.stage for o in outbox] == ["loading"]


def test_a_batch_killed_while_a_job_runs_leaves_it_running_in_the_summary(tmp_path):
    from engine.batch.driver import run_batch
    from engine.batch.jobs import BatchJob

    seen: list[str] = []

    class Killed:  # the batch process is killed (-9) while its job runs: the summary on disk is all that is left
        mode, slots = "in-process", 1

        def start(self, slot, job, out):
            pass

        def finished(self, timeout_s):
            seen.append(json.loads((tmp_path / "summary.json").read_text())["jobs"][0]["status"])
            raise KeyboardInterrupt

        def close(self):
            pass

    with pytest.raises(KeyboardInterrupt):
        run_batch([BatchJob(1, "texture", [], "texture-0000000000000001")], tmp_path, Killed(), quiet=True)
    assert seen == ["running"]
