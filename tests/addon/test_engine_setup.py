"""Set Up Engine without Blender: error lines, configuration checks, a failing pip install, progress parsing."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from csd_blender.link import setup as engine_setup
from csd_blender.link.interpreter_check import check_python, parse_check_output
from csd_blender.link.process_output import error_lines

ROOT = Path(__file__).resolve().parents[2]

PIP_FAILURE = textwrap.dedent("""\
    Looking in links: /tmp/empty
    Processing ./csd_blender_engine-0.1.0-py3-none-any.whl
    ERROR: Could not find a version that satisfies the requirement torch>=2.1 (from versions: none)
    ERROR: No matching distribution found for torch>=2.1
    [notice] A new release of pip is available: 23.2.1 -> 26.3
""")
TRACEBACK = textwrap.dedent("""\
    Traceback (most recent call last):
      File "<string>", line 3, in <module>
        import torch
    ModuleNotFoundError: No module named 'torch'
""")
CHAINED = textwrap.dedent("""\
    Traceback (most recent call last):
      File "a.py", line 1, in <module>
    KeyError: 'x'

    During handling of the above exception, another exception was raised:

    Traceback (most recent call last):
      File "a.py", line 3, in <module>
    RuntimeError: CUDA driver version is insufficient for CUDA runtime version
""")


def test_error_lines_pick_what_a_user_needs():
    assert error_lines(PIP_FAILURE) == [
        "ERROR: Could not find a version that satisfies the requirement torch>=2.1 (from versions: none)",
        "ERROR: No matching distribution found for torch>=2.1"]
    assert error_lines(TRACEBACK) == ["ModuleNotFoundError: No module named 'torch'"]
    assert error_lines(CHAINED) == ["RuntimeError: CUDA driver version is insufficient for CUDA runtime version"]
    assert error_lines("Error: [Errno 13] Permission denied: '/opt/env'\nhint: check the folder") == [
        "Error: [Errno 13] Permission denied: '/opt/env'"]
    assert error_lines("") == []


def test_check_on_a_python_without_torch_shows_the_exception_line_and_what_to_do():
    result = parse_check_output(1, "", TRACEBACK)
    assert not result.ok
    lines = result.lines()
    assert lines[0] == "Error: ModuleNotFoundError: No module named 'torch'"
    assert "Set Up Engine" in lines[1] and not any("Traceback" in line for line in lines)


def test_check_on_a_real_python_without_the_engine(tmp_path):
    import venv

    venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
    result = check_python(engine_setup.venv_python(tmp_path / "bare"))
    assert not result.ok and result.lines()[0] == "Error: ModuleNotFoundError: No module named 'torch'"


@pytest.fixture(scope="module")
def engine_wheel(tmp_path_factory):
    sys.path.insert(0, str(ROOT))
    import build

    return str(build.build_engine_wheel(tmp_path_factory.mktemp("wheel")))


def test_torch_requirement_comes_from_the_engine_wheel(engine_wheel):
    assert engine_setup.torch_requirement(engine_wheel) == "torch>=2.1"


def test_configuration_problems_are_named(tmp_path, engine_wheel):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "important.txt").write_text("mine")
    config = engine_setup.SetupConfig(env_dir=str(foreign), compute="cpu", engine_wheel=engine_wheel,
                                      online_access=False)
    problems = config.problems()
    assert any("not made by Set Up Engine" in p for p in problems)
    assert any("Online access is off" in p for p in problems)
    assert engine_setup.SetupConfig(env_dir=str(tmp_path / "new"), compute="tpu", engine_wheel=engine_wheel,
                                    ).problems() == ["Compute: unknown choice 'tpu' (choose cuda, rocm, cpu, mps)"]
    status = engine_setup.EngineSetup(config).run()
    assert status.state == engine_setup.FAILED and (foreign / "important.txt").read_text() == "mine"


def test_a_failing_install_reports_pips_error_line(tmp_path, engine_wheel):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    config = engine_setup.SetupConfig(env_dir=str(tmp_path / "env"), compute="cpu", engine_wheel=engine_wheel,
                                      wheel_folder=str(empty), log_file=str(tmp_path / "setup.log"))
    setup = engine_setup.EngineSetup(config)
    setup.start()                                  # the UI's path: a worker thread, status polled
    status = setup.wait(300)
    assert status.state == engine_setup.FAILED, status
    assert status.title.startswith("Installing PyTorch")
    assert status.error[-2:] == ["ERROR: No matching distribution found for torch>=2.1",
                                 f"Full log: {tmp_path / 'setup.log'}"], status.error      # the log named (issue 23)
    lines = status.lines()
    assert lines[0] == "Set Up Engine failed at 'Installing PyTorch (CPU only)':" and "Traceback" not in str(lines)
    log = (tmp_path / "setup.log").read_text()
    assert "--no-index" in log and "No matching distribution" in log
    # a second run replaces the environment the first one made (marker file) instead of refusing
    assert engine_setup.EngineSetup(config).run().title.startswith("Installing PyTorch")


def test_cancel_stops_pip_and_ends_cancelled(tmp_path, engine_wheel):
    slow = tmp_path / "slow_python"
    # a "Python" whose venv step hangs: cancel must kill it and end the setup as cancelled
    slow.write_text("#!/bin/sh\nsleep 60\n")
    slow.chmod(0o755)
    config = engine_setup.SetupConfig(env_dir=str(tmp_path / "env"), compute="cpu", engine_wheel=engine_wheel,
                                      base_python=str(slow), wheel_folder=str(tmp_path))
    setup = engine_setup.EngineSetup(config)
    setup.start()
    import time

    end = time.monotonic() + 10
    while setup._proc is None and time.monotonic() < end:
        time.sleep(0.01)
    t0 = time.monotonic()
    setup.cancel()
    status = setup.wait(10)
    assert status.state == engine_setup.CANCELLED and time.monotonic() - t0 < 5
    assert status.lines() == ["Set Up Engine was cancelled"]


def test_detected_compute_is_a_known_choice():
    assert engine_setup.detect_compute() in engine_setup.TORCH_INDEX_URLS


def test_pip_progress_lines_become_the_status_line_and_fraction(tmp_path, engine_wheel):
    import time

    fake = tmp_path / "fake_python"
    fake.write_text("#!/bin/sh\necho 'Collecting torch'\necho '  Downloading https://x.org/whl/torch-2.9-cp311.whl "
                    "(800.0 MB)'\necho 'Progress 400000000 of 800000000'\nsleep 30\n")
    fake.chmod(0o755)
    config = engine_setup.SetupConfig(env_dir=str(tmp_path / "env"), compute="cpu", engine_wheel=engine_wheel,
                                      base_python=str(fake), wheel_folder=str(tmp_path))
    setup = engine_setup.EngineSetup(config)
    setup.start()
    end = time.monotonic() + 10
    while setup.status().line.startswith(("Collecting", "Downloading https")) or not setup.status().line:
        assert time.monotonic() < end, setup.status()
        time.sleep(0.01)
    status = setup.status()
    setup.cancel()
    assert status.line == "Downloading torch-2.9-cp311.whl: 400 of 800 MB"
    assert status.lines() == ["Step 1/4: Creating the Python environment", status.line]
    assert 0.0 < status.fraction < 0.1
    assert setup.wait(10).state == engine_setup.CANCELLED


def test_check_flags_an_engine_that_does_not_match_the_add_on():
    from csd_blender.link.interpreter_check import CheckResult, addon_version

    info = {"python": "3.11.7", "torch": "2.13.0", "engine": "0.1.0", "device": "cpu"}
    assert CheckResult(True, info, expected_engine="0.1.0").lines() == [
        "Python 3.11.7, torch 2.13.0, engine 0.1.0", "Device: cpu"]
    assert CheckResult(True, info, expected_engine="0.2.0").lines()[-1] == (
        "Engine 0.1.0 does not match this add-on (0.2.0): run Set Up Engine again")
    assert addon_version() == ""                  # a source checkout has no manifest beside the package
    ok = check_python(sys.executable, expected_engine="9.9.9")
    assert ok.ok and "does not match this add-on (9.9.9)" in ok.lines()[-1]


def test_online_cuda_setup_runs_pip_with_pytorchs_index_then_the_engine_wheel(tmp_path, engine_wheel):
    """A scripted Python records every command: the steps and their pip arguments, without any network."""
    env = tmp_path / "env"
    fake_base = tmp_path / "base_python"
    fake_base.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        mkdir -p "{env}/bin"
        cat > "{env}/bin/python" <<'PY'
        #!/bin/sh
        echo "$@" >> "{env}/argv.log"
        case "$*" in *--help*) echo "  --progress-bar <progress_bar>  [auto, on, off, raw]";; esac
        exit 0
        PY
        chmod +x "{env}/bin/python"
        """))
    fake_base.chmod(0o755)
    config = engine_setup.SetupConfig(env_dir=str(env), compute="cuda", engine_wheel=engine_wheel,
                                      base_python=str(fake_base))
    status = engine_setup.EngineSetup(config).run()
    assert status.state == engine_setup.FAILED and status.title == "Checking the engine"   # no real torch
    calls = (env / "argv.log").read_text().splitlines()
    pip = [c for c in calls if c.startswith("-m pip install") and "--help" not in c]
    assert pip[0].endswith("--upgrade pip")
    assert pip[1].endswith("--progress-bar=raw torch>=2.1 --index-url https://download.pytorch.org/whl/cu128")
    assert pip[2].endswith(f"--progress-bar=raw {engine_wheel}")          # the engine's deps from PyPI
    assert all("--disable-pip-version-check --no-input" in c for c in pip)
    assert (env / engine_setup.ENV_MARKER).is_file()


def test_a_source_checkout_without_the_bundled_wheel_says_how_to_get_one(tmp_path):
    with pytest.raises(engine_setup.SetupError, match="install the add-on from a zip made by build.py"):
        engine_setup.bundled_engine_wheel(tmp_path)


# --- issue 23, trap 2: a set-up that cannot reach PyTorch's index says so in one line --------------------------
UNREACHABLE = textwrap.dedent("""\
    Looking in indexes: https://download.pytorch.org/whl/cu128
    WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NameResolutionError("<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f3c>: Failed to resolve 'download.pytorch.org' ([Errno -3] Temporary failure in name resolution)")': /whl/cu128/torch/
    ERROR: Could not find a version that satisfies the requirement torch>=2.1 (from versions: none)
    ERROR: No matching distribution found for torch>=2.1
""")


def test_an_unreachable_index_is_the_one_line_cause_with_the_log_and_the_package_folder_hint(tmp_path):
    log_file = tmp_path / "logs" / "engine_setup.log"
    config = engine_setup.SetupConfig(env_dir=str(tmp_path / "env"), compute="cpu", engine_wheel="engine.whl",
                                      log_file=str(log_file))
    setup = engine_setup.EngineSetup(config)
    fake_pip = [sys.executable, "-c", f"import sys; sys.stdout.write({UNREACHABLE!r}); sys.exit(1)"]
    with pytest.raises(engine_setup.SetupError) as info:
        setup._call(fake_pip)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Cannot reach download.pytorch.org") and "resolved" in lines[0], lines
    assert any(str(log_file) in line for line in lines), lines
    assert any("Package Folder" in line for line in lines), lines
    assert not any("No matching distribution" in line for line in lines)        # the symptom, not the cause
