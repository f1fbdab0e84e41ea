"""`python -m engine batch` without Ray: lines checked before any job runs, failures recorded per job, reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_jobs import texture_hashes, write_batch

from engine.batch.driver import run_batch
from engine.batch.executors import InProcess
from engine.batch.jobs import BatchFileError, read_jobs
from engine.cli.main import main


def test_a_malformed_line_stops_the_batch_before_any_job_runs_and_is_named(tmp_path, capsys):
    path = write_batch(tmp_path, [{"seed": 1}, {"seed": 2}])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"task": "texture", "mesh": "ball.obj", "prompt": "a red sphere", "steps": 0}\n')
        fh.write("{not json\n")
    out = tmp_path / "out"
    assert main(["batch", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 3: [bad_request] steps: must be in [1, 100000], got 0" in err
    assert "no job was started" in err and not out.exists()
    with pytest.raises(BatchFileError, match="line 4: not valid JSON"):
        read_jobs(_only(path, 4))
    jobs, bad = read_jobs(path, skip_invalid=True)  # --skip-invalid: the valid lines run, the others are listed
    assert [j.line for j in jobs] == [1, 2] and [e.line for e in bad] == [3, 4]


def _only(path: Path, line: int) -> Path:
    """A copy of `path` whose other lines are blank (line numbers kept)."""
    lines = path.read_text().splitlines()
    copy = path.with_name(f"line{line}.jsonl")
    copy.write_text("\n".join(text if i == line else "" for i, text in enumerate(lines, 1)) + "\n")
    return copy


@pytest.mark.parametrize("line, message", [
    ({"task": "paint"}, "line 1: task: must be one of texture, edit, generate, got 'paint'"),
    ({"colour": "red"}, "line 1: colour: unknown option of `texture`"),
    ({"out": "x"}, "line 1: out: set by the batch"),
    ({"prompt": ""}, "line 1: [bad_prompt] prompt: must not be empty"),
    ({"guidance": "nope"}, "line 1: [bad_request] guidance: unknown"),
    ({"steps": "many"}, "line 1: argument --steps: invalid int value: 'many'"),
])
def test_lines_are_checked_as_the_command_and_the_server_check_them(tmp_path, line, message):
    with pytest.raises(BatchFileError) as info:
        read_jobs(write_batch(tmp_path, [line]))
    assert str(info.value).startswith(message), str(info.value)


def test_job_ids_follow_the_content_of_the_job_and_of_its_mesh(tmp_path):
    path = write_batch(tmp_path, [{"seed": 1}, {"seed": 1, "texture-size": 64}, {"seed": 2}])
    jobs, _ = read_jobs(path)
    assert [j.line for j in jobs] == [1, 3]  # line 2 is line 1 (same options, another spelling): run once
    again, _ = read_jobs(path)
    assert [j.job_id for j in again] == [j.job_id for j in jobs]
    (tmp_path / "ball.obj").write_text((tmp_path / "ball.obj").read_text() + "\n# changed\n")
    changed, _ = read_jobs(path)
    assert not {j.job_id for j in changed} & {j.job_id for j in jobs}


def test_a_bad_mesh_fails_alone_and_a_rerun_redoes_only_unfinished_jobs(tmp_path):
    (tmp_path / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    path = write_batch(tmp_path, [{"seed": 1}, {"seed": 2, "mesh": "broken.obj"}, {"seed": 3}, {"seed": 4}])
    jobs, _ = read_jobs(path)
    out = tmp_path / "out"
    starts: list[int] = []

    def interrupt_after_first_done(event, job, info):
        if event == "started":
            starts.append(job.line)
        if event in ("done", "failed") and job.line == 2:
            raise KeyboardInterrupt

    executor = InProcess()
    with pytest.raises(KeyboardInterrupt):
        run_batch(jobs, out, executor, quiet=True, on_event=interrupt_after_first_done)
    assert starts == [1, 2]
    first = json.loads((out / "summary.json").read_text())
    assert [j["status"] for j in first["jobs"]] == ["done", "failed", "pending", "pending"]
    assert first["jobs"][1]["error"]["code"] == "invalid_mesh", first["jobs"][1]

    starts.clear()
    summary = run_batch(jobs, out, executor, quiet=True,
                        on_event=lambda event, job, info: event == "started" and starts.append(job.line))
    assert starts == [2, 3, 4]  # the finished job is skipped; the failed one is tried again
    by_line = {j.line: j for j in summary.jobs}
    assert by_line[1].previous_run and by_line[1].status == "done"
    assert by_line[2].status == "failed" and by_line[2].error["code"] == "invalid_mesh"
    assert summary.counts()["done"] == 3 and summary.counts()["failed"] == 1
    assert set(texture_hashes(out)) == {by_line[n].job_id for n in (1, 3, 4)}
    files = sorted(p.name for p in (out / by_line[3].job_id).iterdir())
    assert files == ["job.json", "texture.png", "textured.glb", "textured.mtl", "textured.obj", "turntable.png"]
    record = json.loads((out / by_line[3].job_id / "job.json").read_text())
    assert f"--out {out / by_line[3].job_id} " in record["command"]  # what the single-job command would say
    assert not by_line[4].prior_loaded  # the worker's prior is reused between jobs
    assert not list(out.glob(".*partial"))


def test_a_job_out_of_memory_is_recorded_with_the_settings_to_lower(tmp_path, monkeypatch):
    import dataclasses

    from engine.batch import jobs as batch_jobs
    from engine.batch.worker import BatchWorker

    path = write_batch(tmp_path, [{"seed": 1}])
    jobs, _ = read_jobs(path)
    real = batch_jobs.task_commands()

    def out_of_memory(args, write_dir=None):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    fake = {**real, "texture": dataclasses.replace(real["texture"], run_files=out_of_memory)}
    monkeypatch.setattr("engine.batch.worker.task_commands", lambda: fake)
    outcome = BatchWorker().run(jobs[0], str(tmp_path / "out"))
    assert not outcome.ok and outcome.error["code"] == "out_of_memory"
    assert "batch_size" in outcome.error["message"] and "Tried to allocate" in outcome.error["detail"]
