"""The toy prior's training script: a short run from scratch and a run continued from the bundled prior both
save a folder that loads with stock classes and samples."""
from __future__ import annotations

import json

import torch

from engine.priors.hub import TOY_PRIOR_DIR
from engine.toy.sample import ddim_sample
from engine.toy.train import train


def _unet_weights(folder) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder / "unet").state_dict()


def test_short_run_from_scratch_saves_a_loadable_prior(tmp_path):
    info = train(tmp_path / "fresh", steps=3, batch_size=4, images=16, lr=1e-3, seed=0, ema_decay=0.9, width=16,
                 log_every=1)
    assert info["steps"] == 3 and "continued_from" not in info
    assert json.loads((tmp_path / "fresh" / "training_info.json").read_text())["steps"] == 3
    samples = ddim_sample(tmp_path / "fresh", "a red plain sphere", 2, steps=2, seed=0)
    assert samples.shape == (2, 32, 32, 3) and torch.isfinite(samples).all()


def test_continued_run_starts_from_the_given_prior_and_counts_its_steps(tmp_path):
    info = train(tmp_path / "more", steps=2, batch_size=4, images=16, lr=1e-4, seed=0, ema_decay=0.9, width=16,
                 init=TOY_PRIOR_DIR)
    before = json.loads((TOY_PRIOR_DIR / "training_info.json").read_text())
    assert info["steps"] == before["steps"] + 2 and info["steps_this_run"] == 2
    assert info["continued_from"]["steps"] == before["steps"]
    assert info["unet_parameters"] == before["unet_parameters"]   # the init's architecture, not width=16
    old, new = _unet_weights(TOY_PRIOR_DIR), _unet_weights(tmp_path / "more")
    deltas = [float((new[k] - old[k]).abs().max()) for k in old]
    assert 0 < max(deltas) < 0.05, max(deltas)                    # moved, but only a little


def test_a_run_resumed_from_its_checkpoint_ends_with_the_same_weights(tmp_path):
    kw = dict(steps=6, batch_size=4, images=16, lr=1e-3, seed=0, ema_decay=0.9, width=16, min_snr=5.0)
    train(tmp_path / "straight", **kw)
    train(tmp_path / "half", **{**kw, "steps": 6}, checkpoint=tmp_path / "ck", checkpoint_every=3)
    state = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    assert state["step"] == 3                                     # the last checkpoint before the end
    info = train(tmp_path / "resumed", **kw, checkpoint=tmp_path / "ck", resume=True)
    assert info["steps"] == 6 and info["resumed_from_step"] == 3   # ran steps 3-5 only
    a, b = _unet_weights(tmp_path / "straight"), _unet_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ck" / "prior" / "unet").is_dir()         # a loadable EMA prior beside the state
