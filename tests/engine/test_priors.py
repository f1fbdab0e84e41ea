"""Priors on tiny random models saved in diffusers layout and loaded by the real loader (CPU, no downloads)."""

from __future__ import annotations

import pytest
import torch

from engine.errors import EngineError, ErrorCode, ModelMissingError, RequestError
from engine.guidance import CSDConfig, CSDGuidance, PromptEmbeddings, SDSConfig, SDSGuidance, build_guidance
from engine.priors import (
    available_priors,
    canny_edges,
    depth_to_control,
    load_prior,
    loaded_priors,
    release_priors,
)
from engine.priors import loader as loader_mod
from engine.testing.tiny_models import (
    TINY_WORDS,
    save_tiny_controlnet,
    save_tiny_if,
    save_tiny_sd,
    save_tiny_toy,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids oversubscription (5× faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("tiny_models")
    paths = {
        "sd": save_tiny_sd(root / "sd"),
        "sd_v": save_tiny_sd(root / "sd_v", prediction_type="v_prediction"),  # same seed → same weights
        "if": save_tiny_if(root / "if"),
        "toy": save_tiny_toy(root / "toy"),
        "cache": root / "embedding_cache",
    }
    paths["cn_depth"] = save_tiny_controlnet(paths["sd"], root / "cn_depth", seed=1)
    paths["cn_canny"] = save_tiny_controlnet(paths["sd"], root / "cn_canny", seed=2)
    yield paths
    release_priors()


def _load(models, key, **kw):
    return load_prior(str(models[key]), cache_dir=models["cache"], **kw)


def _sd_controlnets(models):
    return (f"depth={models['cn_depth']}", f"canny={models['cn_canny']}")


class CallCounter:
    """Counts forward calls (and their batch sizes) of a module with a forward pre-hook."""

    def __init__(self, module):
        self.batches: list[int] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.batches.append(sample.shape[0])

    def close(self):
        self.handle.remove()


# guidance configs giving 1, 2 and 3 UNet branches
BRANCH_CASES = {
    1: lambda: SDSGuidance(SDSConfig(guidance_scale=1.0, weighting="uniform")),  # ε(y) − ε: cond only
    2: lambda: CSDGuidance(CSDConfig(omega1=1.0, omega2=0.0)),  # cond, null
    3: lambda: CSDGuidance(CSDConfig(omega1=1.0, omega2=0.5)),  # cond, neg, null
}


@pytest.mark.parametrize("with_controlnets", [False, True])
def test_sd_one_unet_call_per_step(models, with_controlnets):
    prior = _load(models, "sd", controlnets=_sd_controlnets(models) if with_controlnets else ())
    assert prior.family == "sd" and prior.latent and prior.resolution == 16 and prior.channels == 4
    prompts = PromptEmbeddings.from_prompts(prior, "a red sphere", negative_prompt="ugly noisy")
    unet = CallCounter(prior.unet)
    nets = [CallCounter(m) for m in prior.controlnet.models.values()] if with_controlnets else []
    try:
        for batch in (1, 4):
            rgb = torch.rand(batch, 3, 24, 24, generator=torch.Generator().manual_seed(batch))
            x = (
                prior.to_model_space(rgb, generator=torch.Generator().manual_seed(0))
                .detach()
                .requires_grad_()
            )
            control = {"depth": torch.rand(batch, 3, 32, 32), "normal": torch.rand(batch, 3, 32, 32)}
            for k, make in BRANCH_CASES.items():
                g = make()
                unet.batches.clear()
                for c in nets:
                    c.batches.clear()
                repeats = 2 if k == 3 else 1  # determinism on the largest plan
                outs = [
                    g(prior, x, prompts, step=3, control=control, generator=torch.Generator().manual_seed(7))
                    for _ in range(repeats)
                ]
                assert outs[0].delta.shape == (batch, 4, 8, 8) and torch.isfinite(outs[0].delta).all()
                assert torch.equal(outs[0].delta, outs[-1].delta)
                assert (outs[0].unet_calls, outs[0].unet_batch) == (1, k * batch)
                assert unet.batches == [k * batch] * repeats  # exactly one UNet call per step
                for c in nets:
                    assert c.batches == [k * batch] * repeats  # each ControlNet once, same batch
    finally:
        unet.close()
        for c in nets:
            c.close()


def test_predict_noise_shapes_and_determinism(models):
    for key in ("sd", "if", "toy"):
        prior = _load(models, key)
        emb = prior.encode_prompts(["a red sphere", "a blue cube", ""])
        size = 8 if prior.latent else prior.resolution
        for n in (1, 4):
            g = torch.Generator().manual_seed(n)
            x = torch.randn(n, prior.channels, size, size, generator=g)
            t = torch.randint(0, 1000, (n,), generator=g)
            e = emb[torch.arange(n) % 3]
            a, b = prior.predict_noise(x, t, e), prior.predict_noise(x, t, e)
            assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)


def test_controlnet_residuals_scales_and_canny_from_normal(models):
    plain = _load(models, "sd")
    with_cn = _load(models, "sd", controlnets=_sd_controlnets(models), controlnet_scales=[0.7, 1.3])
    assert with_cn.controlnets == ("depth", "canny") and with_cn.controlnet_scales == {
        "depth": 0.7,
        "canny": 1.3,
    }
    emb = plain.encode_prompts(["a dog", "a cat"])
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([100, 800])
    normal = torch.zeros(1, 3, 16, 16)
    normal[..., 8:] = 1.0
    ctrl = {"depth": torch.rand(1, 3, 16, 16), "normal": normal}
    e_plain = plain.predict_noise(x, t, emb)
    e_cn = with_cn.predict_noise(x, t, emb, control=ctrl)
    assert not torch.allclose(e_plain, e_cn)
    ctrl2 = {"depth": ctrl["depth"], "canny": canny_edges(normal)}  # precomputed canny = derived one
    torch.testing.assert_close(with_cn.predict_noise(x, t, emb, control=ctrl2), e_cn)
    saved = dict(with_cn.controlnet_scales)
    try:
        with_cn.controlnet_scales.update(depth=0.0, canny=0.0)  # scale 0 skips the nets
        torch.testing.assert_close(with_cn.predict_noise(x, t, emb, control=ctrl), e_plain)
    finally:
        with_cn.controlnet_scales.update(saved)
    with pytest.raises(EngineError, match="control\\['depth'\\]"):
        with_cn.predict_noise(x, t, emb, control={"normal": normal})
    with pytest.raises(RequestError, match="unknown ControlNet 'hed'"):
        _load(models, "sd", controlnets=("hed",))
    with pytest.raises(RequestError, match="pixel prior"):
        _load(models, "toy", controlnets=("depth",))


def test_v_prediction_is_converted_to_epsilon(models):
    eps_prior, v_prior = _load(models, "sd"), _load(models, "sd_v")
    assert v_prior.prediction_type == "v_prediction"
    emb = eps_prior.encode_prompts(["a red sphere", "a blue cube"])
    x_t, t = torch.randn(2, 4, 8, 8), torch.tensor([50, 700])
    v = eps_prior.predict_noise(x_t, t, emb)  # identical weights: this is the raw UNet output
    a = eps_prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v_prior.predict_noise(x_t, t, emb), a.sqrt() * v + (1 - a).sqrt() * x_t)
    # and it inverts the forward process: x_t = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε ⇒ v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x0
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    xt = v_prior.add_noise(x0, noise, t)
    v_true = a.sqrt() * noise - (1 - a).sqrt() * x0
    torch.testing.assert_close(v_prior.to_epsilon(v_true, xt, t), noise, rtol=1e-4, atol=1e-4)


def test_sd_vae_encode_is_differentiable(models):
    prior = _load(models, "sd")
    rgb = torch.rand(2, 3, 30, 30, requires_grad=True)
    z = prior.to_model_space(rgb)
    assert z.shape == (2, 4, 8, 8) and z.dtype == torch.float32
    z.square().sum().backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    assert prior.decode(z.detach()).shape == (2, 3, 16, 16)


def test_if_style_prior_keeps_epsilon_channels_and_t5_mask(models):
    prior = _load(models, "if")
    assert prior.family == "if" and not prior.latent and prior.unet.config.out_channels == 6
    emb = prior.encode_prompts(["A Red Sphere ", ""])
    assert emb.shape[:2] == (2, 77)
    enc = prior.text._load_encoder()  # the encoder is not kept after encoding
    tok = prior.text.tokenizer(
        ["a red sphere"], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    )
    manual = enc(tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    torch.testing.assert_close(emb[:1], manual)
    x_t, t = torch.randn(3, 3, 16, 16), torch.tensor([1, 500, 999])
    e = emb[[0, 1, 0]]
    raw = prior.unet(x_t, t, encoder_hidden_states=e).sample
    torch.testing.assert_close(prior.predict_noise(x_t, t, e), raw[:, :3])


def test_pixel_to_model_space_resizes_differentiably(models):
    prior = _load(models, "toy")
    assert prior.family == "toy" and prior.resolution == 32
    rgb = torch.rand(2, 3, 20, 20, requires_grad=True)
    x = prior.to_model_space(rgb)
    assert x.shape == (2, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    x.sum().backward()
    assert rgb.grad.abs().sum() > 0
    same = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(prior.to_model_space(same), same * 2 - 1)


def test_toy_prior_rejects_unknown_words(models):
    prior = _load(models, "toy")
    with pytest.raises(EngineError) as err:
        prior.encode_prompts(["a red spaceship"])
    assert err.value.code == ErrorCode.BAD_PROMPT
    assert "'spaceship'" in err.value.message
    for word in TINY_WORDS:
        assert word in err.value.message
    assert prior.encode_prompts(["A RED sphere"]).shape == (1, 8, 32)  # the tokenizer lower-cases
    with pytest.raises(EngineError) as err:
        PromptEmbeddings.from_prompts(prior, "a red sphere", negative_prompt="blurry")
    assert err.value.code == ErrorCode.BAD_PROMPT and err.value.field == "negative_prompt"
    assert "'blurry'" in err.value.message


def test_embeddings_cached_in_memory_and_on_disk(models, tmp_path):
    prior = load_prior(str(models["toy"]), cache_dir=tmp_path)
    loads = prior.text.encoder_loads
    a = prior.encode_prompts(["a green cube", "a green cube", ""])
    assert prior.text.encoder_loads == loads + 1  # one encoder load for the uncached prompts
    assert torch.equal(a[0], a[1])
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    prior.encode_prompts(["a green cube"])
    assert prior.text.encoder_loads == loads + 1  # memory hit
    release_priors()
    again = load_prior(str(models["toy"]), cache_dir=tmp_path)
    assert again is not prior
    torch.testing.assert_close(again.encode_prompts(["a green cube"]), a[:1])
    assert again.text.encoder_loads == 0  # disk hit: the text encoder never loaded


def test_load_prior_cache_and_release(models):
    a = _load(models, "toy")
    assert _load(models, "toy") is a and a in loaded_priors()
    assert release_priors() >= 1 and loaded_priors() == []
    assert _load(models, "toy") is not a


def test_missing_hub_model_names_id_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ModelMissingError) as err:
        load_prior("csd-blender-tests/no-such-model")
    msg = err.value.message
    assert err.value.code == ErrorCode.MODEL_MISSING
    assert "csd-blender-tests/no-such-model" in msg and str(tmp_path / "hf-cache") in msg
    assert "python -m engine models download csd-blender-tests/no-such-model" in msg
    with pytest.raises(ModelMissingError, match="no such folder"):
        load_prior(str(tmp_path / "nothing-here"))


def test_missing_toy_prior_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(loader_mod, "TOY_PRIOR_DIR", tmp_path / "toy_prior")
    with pytest.raises(ModelMissingError, match="python -m engine.toy.train"):
        load_prior("toy")


def test_available_priors_lists_toy_and_cached_pipelines(monkeypatch, tmp_path):
    monkeypatch.setattr(loader_mod, "TOY_PRIOR_DIR", tmp_path / "toy_prior")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert available_priors() == []
    (tmp_path / "toy_prior").mkdir()
    (tmp_path / "toy_prior" / "model_index.json").write_text("{}")
    snap = tmp_path / "hub" / "models--org--some-pipeline" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (tmp_path / "hub" / "models--org--a-text-model" / "snapshots" / "x").mkdir(parents=True)
    assert available_priors() == ["toy", "org/some-pipeline"]


def test_canny_and_depth_control_images():
    img = torch.zeros(1, 3, 32, 32)
    img[..., 16:] = 1.0  # a vertical step edge
    edges = canny_edges(img)
    assert edges.shape == (1, 3, 32, 32) and set(edges.unique().tolist()) <= {0.0, 1.0}
    cols = edges[0, 0].sum(dim=0).nonzero().flatten().tolist()
    assert cols and all(13 <= c <= 18 for c in cols)  # only near the step (5×5 blur widens it)
    assert edges[0, 0, :, 13:19].sum() >= 30  # a continuous line down the image
    assert canny_edges(torch.full((1, 3, 16, 16), 0.5)).sum() == 0
    depth = torch.tensor([[[[1.0, 2.0], [3.0, 9.0]]]])
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    d = depth_to_control(depth, mask)
    assert d.shape == (1, 3, 2, 2)
    assert d[0, 0, 0, 0] == pytest.approx(1.0) and d[0, 0, 1, 0] == pytest.approx(0.1) and d[0, 0, 1, 1] == 0


def test_guidance_end_to_end_on_toy_style_prior(models):
    """A few CSD steps through the real loader on the toy layout move the image (the loop is wired up)."""
    prior = _load(models, "toy")
    g = build_guidance("csd-toy", total_steps=4)
    prompts = PromptEmbeddings.from_prompts(prior, "a blue striped sphere")
    rgb = torch.full((2, 3, 32, 32), 0.5, requires_grad=True)
    opt = torch.optim.Adam([rgb], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        out = g(prior, prior.to_model_space(rgb), prompts, step, generator=gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert out.unet_batch == 4 and out.delta.norm().item() == pytest.approx(1.0, abs=1e-4)
    assert (rgb.detach() - 0.5).abs().max() > 0.05


def test_sdpa_processors_and_reduced_precision_weights(models):
    for key in ("sd", "if"):
        prior = _load(models, key)
        names = {type(p).__name__ for p in prior.unet.attn_processors.values()}
        assert names and all(n.endswith("2_0") for n in names), names  # torch-2 SDPA everywhere
    full = _load(models, "toy")
    half = _load(models, "toy", dtype="bfloat16")  # CPU stand-in for CUDA fp16
    assert next(half.unet.parameters()).dtype == torch.bfloat16
    emb = full.encode_prompts(["a red sphere"])
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([300])
    out = half.predict_noise(x, t, emb)
    assert out.dtype == torch.float32  # inputs cast in, outputs back to fp32
    torch.testing.assert_close(out, full.predict_noise(x, t, emb), atol=0.1, rtol=0.1)
