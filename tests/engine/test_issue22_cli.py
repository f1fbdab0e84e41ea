"""Issue 22, the command line's refusals: option values that would start a misbehaving engine get one `error:`
line and exit 2 (an empty admin token file, `--ray-workers` below 1, a client timeout shorter than a few client
heartbeats), and a bad edit texture is one line and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "issue22-cli-token-0123456789"


def _engine(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=ROOT, env=env, capture_output=True, check=False,
                          text=True, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return path


@pytest.mark.parametrize("content", ["", "  \n\t \n"])
def test_an_empty_admin_token_file_is_refused(tmp_path, token_file, content):
    admin = tmp_path / "admin"
    admin.write_text(content)
    line = _one_error_line(_engine("serve", "--device", "cpu", "--token-file", str(token_file),
                                   "--admin-token-file", str(admin)))
    assert "--admin-token-file" in line and "empty" in line, line


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_ray_workers_below_one_are_refused(token_file, workers):
    line = _one_error_line(_engine("serve", "--device", "cpu", "--token-file", str(token_file), "--ray", "local",
                                   "--ray-workers", workers))
    assert "--ray-workers" in line and "at least 1" in line, line


def test_a_client_timeout_shorter_than_a_few_heartbeats_is_refused(token_file):
    line = _one_error_line(_engine("serve", "--device", "cpu", "--token-file", str(token_file),
                                   "--client-timeout", "0.1"))
    assert "--client-timeout" in line, line
