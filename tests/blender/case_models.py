"""The Models panel in the preferences (issue 23), in headless Blender against a local fake hub (HF_ENDPOINT):
Refresh lists the recommended models, Download fetches a tiny model with the engine's Python into the Models
Folder (present, with its size), Remove frees it, and a gated model without a token says where the licence and
the Hub Token field are. The commands run in a subprocess (link/models.py); torch never enters Blender."""
from __future__ import annotations

import bpy_env  # noqa: F401  (must come before bpy)

import os
import subprocess
import sys

import bpy
import pytest
from fake_hub import FakeHub

REPO_ID = "csd-tests/tiny-sd"


@pytest.fixture(scope="module")
def ext():
    return bpy_env.install()


@pytest.fixture(scope="module")
def tiny_sd():
    folder = bpy_env.HOME / "tiny-sd"
    code = f"from engine.testing.tiny_models import save_tiny_sd; save_tiny_sd(__import__('pathlib').Path({str(folder)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=bpy_env.ROOT)
    return folder


@pytest.fixture
def prefs(ext, tmp_path):
    prefs = bpy_env.preferences()
    prefs.engine_mode, prefs.python_path = "LOCAL", sys.executable
    prefs.cache_folder, prefs.hub_token = str(tmp_path / "models"), ""
    return prefs


def _draw(prefs) -> list:
    from case_engine_setup import _draw_preferences

    return _draw_preferences(prefs)


def test_refresh_download_remove_with_the_engine_s_python(prefs, tiny_sd, monkeypatch):
    models = bpy_env.submodule("operators.models")
    with FakeHub({REPO_ID: tiny_sd}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert bpy.ops.csd.models_refresh() == {"FINISHED"}
        listing = models.listing()
        assert not listing["stable-diffusion-v1-5/stable-diffusion-v1-5"]["present"]
        assert listing["DeepFloyd/IF-I-XL-v1.0"]["gated"]
        calls = _draw(prefs)
        assert ("prop", "hub_token") in calls and ("prop", "cache_folder") in calls
        assert ("operator", "csd.model_download") in calls and ("operator", "wm.url_open") in calls
        assert any(c[0] == "label" and c[1].startswith("Stable Diffusion 1.5: not downloaded, ~2.2 GB")
                   for c in calls), calls
        assert bpy.ops.csd.model_download(model_id=REPO_ID) == {"FINISHED"}
        assert listing is models.listing() and models.listing()[REPO_ID]["present"]
        size = models.listing()[REPO_ID]["bytes_on_disk"]
        assert size == sum(p.stat().st_size for p in tiny_sd.rglob("*") if p.is_file())
        assert os.path.isdir(os.path.join(prefs.cache_folder, "hub"))
        assert models.last_report().startswith(f"Downloaded {REPO_ID}")
        assert any(c[0] == "label" and c[1].startswith(f"{REPO_ID}: present") for c in _draw(prefs))
    assert bpy.ops.csd.model_remove(model_id=REPO_ID) == {"FINISHED"}
    assert REPO_ID not in models.listing() and "freed" in models.last_report()


def test_a_gated_model_without_a_token_names_the_licence_and_the_token_field(prefs, tiny_sd, monkeypatch):
    models = bpy_env.submodule("operators.models")
    with FakeHub({REPO_ID: tiny_sd}, gated={REPO_ID: "hf_ok"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(RuntimeError, match="accept its licence"):     # background Blender: an ERROR report
            bpy.ops.csd.model_download(model_id=REPO_ID)
        report = models.last_report()
        assert "gated" in report and "accept its licence" in report and "Hub Token" in report
        prefs.hub_token = "hf_ok"
        assert bpy.ops.csd.model_download(model_id=REPO_ID) == {"FINISHED"}


def test_the_buttons_say_why_without_an_engine_python(ext):
    prefs = bpy_env.preferences()
    prefs.engine_mode, prefs.python_path = "LOCAL", ""
    assert bpy_env.submodule("operators.models").models_block_reason(prefs).startswith("Set up the engine first")
    with pytest.raises(RuntimeError, match="Set up the engine first"):
        bpy.ops.csd.models_refresh()
