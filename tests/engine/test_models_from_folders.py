"""Models and ControlNets from local folders across the protocol, the CLI and the loader (tiny saved models)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from paths import REPO

from csd_blender.protocol.errors import ProtocolError
from csd_blender.protocol.params import TextureParams, split_controlnet_spec
from engine.commands.texture import split_controlnet_arg


@pytest.mark.parametrize("spec, expected", [
    ("depth", ("depth", "")),
    ("depth=/models/cn depth", ("depth", "/models/cn depth")),
    (" canny = lllyasviel/control_v11p_sd15_canny ", ("canny", "lllyasviel/control_v11p_sd15_canny")),
    ("normal=C:\\models\\cn", ("normal", "C:\\models\\cn")),
])
def test_controlnet_specs_accept_a_kind_with_a_hub_id_or_folder(spec, expected):
    assert split_controlnet_spec(spec) == expected
    assert TextureParams(prompt="a red sphere", controlnets=[spec]).validate().controlnets == [spec]


@pytest.mark.parametrize("controlnets, needle", [
    (["hed"], "unknown ControlNet 'hed'"),
    (["depth="], "give a hub id or a folder"),
    (["depth=/a", "depth"], "twice"),
    (["depth=/a\nb"], "control characters"),
    (["depth=" + "x" * 600], "at most 512"),
    ([3], "must be strings"),
])
def test_bad_controlnet_specs_name_the_field(controlnets, needle):
    with pytest.raises(ProtocolError) as info:
        TextureParams(prompt="a red sphere", controlnets=controlnets).validate()
    assert info.value.field == "controlnets" and needle in info.value.message


def test_cli_controlnet_values_split_only_before_a_kind():
    assert split_controlnet_arg("depth=/data/a,b/cn,canny") == ["depth=/data/a,b/cn", "canny"]
    assert split_controlnet_arg("depth, normal") == ["depth", "normal"]
    assert split_controlnet_arg("depth=/x/canny-net") == ["depth=/x/canny-net"]
    assert split_controlnet_arg("") == []


@pytest.fixture(scope="module")
def tiny_sd_with_depth(tmp_path_factory):
    """Folders of a tiny random Stable Diffusion model and a ControlNet made from its UNet (saved to disk)."""
    from engine.testing.tiny_models import save_tiny_controlnet, save_tiny_sd

    root = tmp_path_factory.mktemp("folder_models")
    sd = save_tiny_sd(root / "my sd")                          # a space in the path, as users have
    return sd, save_tiny_controlnet(sd, root / "cn,depth-v11", seed=1)   # a comma too


def test_cli_texture_runs_with_model_and_controlnet_folders(tmp_path, tiny_sd_with_depth):
    import trimesh

    sd, cn = tiny_sd_with_depth
    mesh = tmp_path / "ball.obj"
    trimesh.creation.icosphere(subdivisions=1).export(mesh)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine", "texture", "--mesh", str(mesh), "--prompt", "a red sphere",
           "--out", str(out), "--model", str(sd), "--controlnet", f"depth={cn}", "--steps", "2",
           "--batch-size", "1", "--texture-size", "64", "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = json.loads((out / "job.json").read_text())
    assert job["params"]["model"] == str(sd) and job["params"]["controlnets"] == [f"depth={cn}"]
    assert (out / "texture.png").stat().st_size > 0
    # the recorded command reproduces the ControlNet folder as one argument
    assert f"--controlnet depth={cn}" in job["command"]


def test_loader_reads_controlnet_from_a_folder(tiny_sd_with_depth):
    from engine.priors.loader import load_prior, release_priors

    sd, cn = tiny_sd_with_depth
    try:
        prior = load_prior(str(sd), device="cpu", controlnets=(f"depth={cn}",))
        assert prior.controlnets == ("depth",)
    finally:
        release_priors()
