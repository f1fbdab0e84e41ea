"""`python -m engine models list|download|remove` against a local fake hub (HF_ENDPOINT), for real: download →
present with the right size → a job loads it offline → remove; an interrupted download resumes; a gated repo
without a token says where the licence and the token go; a job whose model is missing is refused before it starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from fake_hub import FakeHub
from paths import REPO

from csd_blender.protocol.errors import ErrorCode, ProtocolError
from csd_blender.protocol.models import DEFAULT_CONTROLNET_IDS, RECOMMENDED, TOKEN_FIELD
from csd_blender.protocol.params import TextureParams
from engine.models.store import model_status, models_cache, select_files

REPO_ID = "csd-tests/tiny-sd"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from engine.testing.tiny_models import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("hub") / "tiny-sd")


def _engine(args, env, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, **kw)


def _env(hub=None, **extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "0", **extra}
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    env.pop("HF_TOKEN", None)
    return env


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_the_recommended_models_are_the_issue_s_and_controlnet_defaults_come_from_them():
    ids = {e.id for e in RECOMMENDED}
    assert set(DEFAULT_CONTROLNET_IDS.values()) <= ids
    assert {"stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/stable-diffusion-2-1-base",
            "DeepFloyd/IF-I-XL-v1.0", "madebyollin/taesd"} <= ids
    assert [e.id for e in RECOMMENDED if e.gated] == ["DeepFloyd/IF-I-XL-v1.0"]


def test_a_download_takes_the_loaded_components_safetensors_only_and_fp16_where_there_is_one():
    files = {"model_index.json": 1, "v1-5-pruned.safetensors": 4, "safety_checker/model.safetensors": 1,
             "unet/config.json": 1, "unet/diffusion_pytorch_model.safetensors": 3,
             "unet/diffusion_pytorch_model.fp16.safetensors": 2, "unet/diffusion_pytorch_model.bin": 3,
             "unet/diffusion_pytorch_model.non_ema.safetensors": 3, "vae/diffusion_pytorch_model.safetensors": 1,
             "tokenizer/vocab.json": 1, "text_encoder/model.safetensors": 1}
    assert select_files(files) == ["model_index.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
                                   "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
                                   "vae/diffusion_pytorch_model.safetensors"]
    assert "unet/diffusion_pytorch_model.safetensors" in select_files(files, "full")
    single = {"config.json": 1, "diffusion_pytorch_model.safetensors": 1, "taesd_encoder.pth": 1, "images/a.png": 1}
    assert select_files(single) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_download_list_job_offline_remove(tmp_path, tiny_sd):
    import trimesh

    models = tmp_path / "models"
    mesh = tmp_path / "ball.obj"
    trimesh.creation.icosphere(subdivisions=1).export(mesh)
    job = ["texture", "--mesh", str(mesh), "--prompt", "a red sphere", "--out", str(tmp_path / "out"), "--model",
           REPO_ID, "--steps", "1", "--batch-size", "1", "--texture-size", "64", "--device", "cpu", "--quiet"]
    offline = _env(HF_HUB_OFFLINE="1", HF_HOME=str(models))
    offline.pop("HF_HUB_CACHE", None)
    refused = _engine(job, offline)                    # missing: refused before it starts, pointing at the panel
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("error: [model_missing]") and f"python -m engine models download {REPO_ID}" in line
    with FakeHub({REPO_ID: tiny_sd}) as hub:
        got = _engine(["models", "download", REPO_ID, "--models-dir", str(models), "--json"], _env(hub))
        assert got.returncode == 0, got.stderr[-2000:]
        events = _events(got.stdout)
        assert events[-1]["event"] == "done" and events[0]["event"] == "progress"
        total = sum(p.stat().st_size for p in tiny_sd.rglob("*.safetensors")) + sum(
            p.stat().st_size for p in tiny_sd.rglob("*") if p.is_file() and not p.name.endswith(".safetensors"))
        assert events[-2]["done"] == events[-2]["total"] == total
    listed = {e["id"]: e for e in _events(_engine(["models", "list", "--json", "--models-dir", str(models)],
                                                  _env()).stdout)}
    assert listed[REPO_ID]["present"] and listed[REPO_ID]["bytes_on_disk"] == total
    assert not listed["stable-diffusion-v1-5/stable-diffusion-v1-5"]["present"]
    assert listed["DeepFloyd/IF-I-XL-v1.0"]["gated"] and listed["madebyollin/taesd"]["estimate_bytes"] > 0
    ran = _engine(job, offline)                        # the hub is gone; HF_HUB_OFFLINE=1: loads from the folder
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "job.json").read_text())["params"]["model"] == REPO_ID
    removed = _events(_engine(["models", "remove", REPO_ID, "--models-dir", str(models), "--json"], _env()).stdout)
    assert removed == [{"event": "removed", "id": REPO_ID, "freed_bytes": total}]
    assert not model_status(models_cache(models), REPO_ID).present and _engine(job, offline).returncode == 2


def _start(hub, models, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "models", "download", REPO_ID, "--models-dir",
                             str(models), "--json", *extra], cwd=REPO, env=_env(hub), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_bytes(proc, fraction: float) -> dict:
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["done"] >= fraction * event["total"]:
            return event
    raise AssertionError(f"no progress past {fraction}: {proc.stderr.read()[-2000:]}")


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, tiny_sd):
    models = tmp_path / "models"
    with FakeHub({REPO_ID: tiny_sd}, delay_s=0.05) as hub:
        proc = _start(hub, models)
        seen = _wait_for_bytes(proc, 0.4)
        proc.send_signal(signal.SIGKILL)                # as a crash or a closed laptop lid would
        proc.wait(timeout=30)
        partial = list((models / "hub").rglob("*.csd-partial"))
        assert partial and partial[0].stat().st_size > 0
        kept, sent_before = partial[0].stat().st_size, hub.bytes_sent
        again = _engine(["models", "download", REPO_ID, "--models-dir", str(models), "--json"], _env(hub))
        assert again.returncode == 0, again.stderr[-2000:]
        starts = [int(r.split("=")[1].split("-")[0]) for _, r in hub.ranges]
        assert max(starts) > 0, hub.ranges                                  # asked only for the missing bytes
        assert hub.bytes_sent - sent_before <= seen["total"] - kept                # nothing fetched twice
        assert model_status(models_cache(models), REPO_ID).present
        assert not list((models / "hub").rglob("*.csd-partial"))


def test_cancel_stops_cleanly_and_keeps_the_partial_file(tmp_path, tiny_sd):
    models = tmp_path / "models"
    with FakeHub({REPO_ID: tiny_sd}, delay_s=0.05) as hub:
        proc = _start(hub, models)
        _wait_for_bytes(proc, 0.3)
        proc.send_signal(signal.SIGTERM)                # the Models panel's Cancel
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 3
        assert _events(out)[-1]["code"] == "cancelled"
        assert list((models / "hub").rglob("*.csd-partial"))
        assert not model_status(models_cache(models), REPO_ID).present


def test_a_gated_model_without_a_token_names_the_licence_page_and_the_token_field(tmp_path, tiny_sd):
    models = tmp_path / "models"
    with FakeHub({REPO_ID: tiny_sd}, gated={REPO_ID: "hf_secret"}) as hub:
        got = _engine(["models", "download", REPO_ID, "--models-dir", str(models), "--json"], _env(hub))
        assert got.returncode == 2
        error = _events(got.stdout)[-1]
        assert error["code"] == "gated" and f"https://huggingface.co/{REPO_ID}" in error["message"]
        assert TOKEN_FIELD in error["message"] and "--token" in error["message"]
        ok = _engine(["models", "download", REPO_ID, "--models-dir", str(models), "--token", "hf_secret"],
                     _env(hub))
        assert ok.returncode == 0, ok.stderr[-2000:]
    assert model_status(models_cache(models), REPO_ID).present


def test_the_server_refuses_a_job_whose_model_or_controlnet_is_missing(tmp_path, monkeypatch):
    from engine.serve.admission import check_params
    from engine.tasks.texture import TEXTURE_SPEC

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    for params in ({"prompt": "a red sphere", "model": REPO_ID},
                   {"prompt": "a red sphere", "model": "toy", "controlnets": ["depth"]}):
        with pytest.raises(ProtocolError) as info:
            check_params(TEXTURE_SPEC, params)
        assert info.value.code == ErrorCode.MODEL_MISSING and "models download" in info.value.message
    assert check_params(TEXTURE_SPEC, {"prompt": "a red sphere"}).model == "toy"
    (tmp_path / "model_index.json").write_text("{}")  # a local model folder: not subject to the download gate
    assert isinstance(check_params(TEXTURE_SPEC, {"prompt": "a red sphere", "model": str(tmp_path)}),
                      TextureParams)
