"""The Models panel's engine side without Blender (link/models.py): `python -m engine models …` on a worker
thread against the fake hub — the call returns at once, progress arrives while it runs, Cancel keeps what was
downloaded and the next Download resumes, a gated model's message reaches the status."""
from __future__ import annotations

import sys
import time

import pytest
from fake_hub import FakeHub

from csd_blender.link.models import ModelsTask, models_command
from csd_blender.protocol.models import TOKEN_FIELD

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
REPO_ID = "csd-tests/tiny-sd"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from engine.testing.tiny_models import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("hub") / "tiny-sd")


def test_the_command_line_carries_no_token():
    cmd = models_command("/py", "download", ["a/b"], "/models")
    assert cmd == ["/py", "-m", "engine", "models", "download", "a/b", "--json", "--models-dir", "/models"]


def test_download_runs_on_a_worker_thread_cancel_keeps_it_and_the_next_one_resumes(tmp_path, tiny_sd):
    with FakeHub({REPO_ID: tiny_sd}, delay_s=0.05) as hub:
        env = {"HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
        t0 = time.monotonic()
        task = ModelsTask(sys.executable, "download", [REPO_ID], str(tmp_path), env=env, cwd=str(ROOT))
        assert time.monotonic() - t0 < 1.0                     # never blocks the caller (Blender's main thread)
        deadline = time.monotonic() + 120
        while task.status().done < 0.3 * max(task.status().total, 1) or not task.status().total:
            assert time.monotonic() < deadline and not task.status().finished, task.status()
            time.sleep(0.05)
        assert 0 < task.status().fraction < 1 and "Downloading" in task.status().text
        task.cancel()
        status = task.wait(60)
        assert status.finished and not status.ok and status.error_code == "cancelled"
        again = ModelsTask(sys.executable, "download", [REPO_ID], str(tmp_path), env=env, cwd=str(ROOT)).wait(300)
        assert again.ok, again.error
        assert any(int(r.split("=")[1].split("-")[0]) > 0 for _, r in hub.ranges)
        listed = ModelsTask(sys.executable, "list", (), str(tmp_path), env=env, cwd=str(ROOT)).wait(120)
        assert listed.models[REPO_ID]["present"] and listed.models[REPO_ID]["bytes_on_disk"] > 0


def test_a_gated_model_reports_the_licence_page_and_the_token_field(tmp_path, tiny_sd):
    with FakeHub({REPO_ID: tiny_sd}, gated={REPO_ID: "hf_ok"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
        status = ModelsTask(sys.executable, "download", [REPO_ID], str(tmp_path), env=env, cwd=str(ROOT)).wait(120)
        assert status.error_code == "gated" and TOKEN_FIELD in status.error
        ok = ModelsTask(sys.executable, "download", [REPO_ID], str(tmp_path), token="hf_ok", env=env,
                        cwd=str(ROOT)).wait(300)
        assert ok.ok, ok.error
