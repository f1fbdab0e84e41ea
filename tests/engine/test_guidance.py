"""Guidance identities (CSD Eq. 10/11, SDS), official schedules, weighting, loss gradient and the branch plan."""

from __future__ import annotations

import pytest
import torch

from engine.errors import RequestError
from engine.guidance import (
    CSDConfig,
    CSDGuidance,
    PromptEmbeddings,
    Schedule,
    SDSConfig,
    SDSGuidance,
    build_guidance,
    get_preset,
    preset_names,
)
from engine.registry import GUIDANCE

C, H, W = 3, 4, 4


class CountingPrior:
    """A prior whose ε is read straight out of the embedding: embedding (N, 1, C·H·W) → ε (N, C, H, W).

    Records every predict_noise call (batch size, x_t, t, control) so tests can count UNet calls.
    """

    def __init__(self, T: int = 1000):
        self.num_train_timesteps = T
        self.alphas_cumprod = torch.linspace(0.9999, 0.01, T)
        self.calls: list[dict] = []

    def add_noise(self, x, noise, t):
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * noise

    def predict_noise(self, x_t, t, embeddings, control=None):
        self.calls.append({"n": x_t.shape[0], "x_t": x_t.clone(), "t": t.clone(), "control": control})
        return embeddings.reshape(x_t.shape[0], C, H, W).clone()

    def noise_of(self, x, call_index=-1):
        """Recover the ε used to make x_t in a recorded call (first B samples)."""
        call = self.calls[call_index]
        b = x.shape[0]
        a = self.alphas_cumprod[call["t"][:b]].view(-1, 1, 1, 1)
        return (call["x_t"][:b] - a.sqrt() * x.detach()) / (1 - a).sqrt()


def eps(seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, C * H * W, generator=g)


def as_img(e: torch.Tensor, b: int) -> torch.Tensor:
    return e.reshape(-1, C, H, W).expand(b, -1, -1, -1)


@pytest.fixture()
def setup():
    prior = CountingPrior()
    e_y, e_neg, e_null = eps(1), eps(2), eps(3)
    prompts = PromptEmbeddings(cond=e_y, null=e_null, neg=e_neg)
    x = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(9), requires_grad=True)
    return prior, prompts, x, (as_img(e_y, 2), as_img(e_neg, 2), as_img(e_null, 2))


def csd(**kw) -> CSDGuidance:
    return CSDGuidance(CSDConfig(**{"weighting": "uniform", "grad_mode": "none", **kw}))


def test_csd_without_negative_weight_is_classifier_score(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    out = csd(omega1=2.5, omega2=0.0)(prior, x, prompts, step=0)
    torch.testing.assert_close(out.delta, 2.5 * (ey - e0))
    assert (out.unet_calls, out.unet_batch, out.branches) == (1, 4, ("cond", "null"))


def test_csd_eq10_equals_its_expansion(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    w1, w2 = 1.3, 0.7
    out = csd(omega1=w1, omega2=w2)(prior, x, prompts, step=0)
    torch.testing.assert_close(out.delta, w1 * (ey - e0) - w2 * (eneg - e0))
    torch.testing.assert_close(out.delta, w1 * ey + (w2 - w1) * e0 - w2 * eneg)
    assert (out.unet_calls, out.unet_batch) == (1, 6)


def test_csd_edit_preset_is_target_minus_edit(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    g = build_guidance("csd-edit", grad_mode="none")
    out = g(prior, x, prompts, step=0)
    torch.testing.assert_close(out.delta, ey - eneg)
    assert out.branches == ("cond", "neg") and out.unet_batch == 4


def test_sds_reduces_to_cond_minus_noise_at_scale_one(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    prompts = PromptEmbeddings(cond=prompts.cond, null=prompts.null)
    g = SDSGuidance(SDSConfig(guidance_scale=1.0, weighting="uniform"))  # diffusers 1 = threestudio 0
    out = g(prior, x, prompts, step=0, generator=torch.Generator().manual_seed(0))
    noise = prior.noise_of(x)
    torch.testing.assert_close(out.delta, ey - noise, rtol=1e-4, atol=1e-4)
    assert out.branches == ("cond",) and out.unet_batch == 2


def test_sds_cfg_in_diffusers_and_threestudio_conventions(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    prompts = PromptEmbeddings(cond=prompts.cond, null=prompts.null)
    s = 101.0
    out = SDSGuidance(SDSConfig(guidance_scale=s, weighting="uniform"))(prior, x, prompts, step=0)
    noise = prior.noise_of(x)
    torch.testing.assert_close(out.delta, e0 + s * (ey - e0) - noise, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(
        out.delta, ey + (s - 1) * (ey - e0) - noise, rtol=1e-4, atol=1e-3
    )  # threestudio 100
    assert out.branches == ("cond", "null") and out.unet_batch == 4


def test_sds_negative_prompt_replaces_the_unconditional_branch(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    out = SDSGuidance(SDSConfig(guidance_scale=7.5, weighting="uniform"))(prior, x, prompts, step=0)
    noise = prior.noise_of(x)
    torch.testing.assert_close(out.delta, eneg + 7.5 * (ey - eneg) - noise, rtol=1e-4, atol=1e-4)
    assert out.branches == ("cond", "neg")


@pytest.mark.parametrize("preset", ["csd-if", "csd-sd-refine", "sds-sd"])
@pytest.mark.parametrize("b", [1, 2])
def test_loss_gradient_is_delta(setup, preset, b):
    """The official loss 0.5·‖x − sg(x − δ)‖²_sum / B: ∂loss/∂x = δ for B = 1, δ / B per sample in general."""
    prior, prompts, _, _ = setup
    x = torch.randn(b, C, H, W, requires_grad=True)
    out = build_guidance(preset)(prior, x, prompts, step=1234, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    torch.testing.assert_close(x.grad * b, out.delta)
    torch.testing.assert_close(out.loss, 0.5 * (out.delta**2).sum() / b)
    assert out.delta.abs().sum() > 0


def test_weightings(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    for name, fn in [
        ("uniform", lambda a: torch.ones_like(a)),
        ("sds", lambda a: 1 - a),
        ("fantasia3d", lambda a: a.sqrt() * (1 - a)),
    ]:
        out = csd(omega1=1.0, omega2=0.0, weighting=name)(prior, x, prompts, step=0)
        w = fn(prior.alphas_cumprod[out.t]).view(-1, 1, 1, 1)
        torch.testing.assert_close(out.delta, w * (ey - e0))


def test_grad_postprocessing(setup):
    prior, prompts, x, (ey, eneg, e0) = setup
    out = csd(omega1=3.0, omega2=0.0, grad_mode="unit_l2")(prior, x, prompts, step=0)
    assert out.delta.norm().item() == pytest.approx(1.0, abs=1e-5)  # ONE global norm
    torch.testing.assert_close(out.delta, 3 * (ey - e0) / (3 * (ey - e0)).norm())
    raw = 3 * (ey - e0)
    assert out.raw_loss == pytest.approx(0.5 * float((raw**2).sum()) / x.shape[0], rel=1e-5)  # before unit-L2
    assert out.loss.item() == pytest.approx(0.5 / x.shape[0], rel=1e-5)  # after it: a constant
    out = csd(omega1=3.0, omega2=0.0, grad_mode="clamp", grad_clip=0.1)(prior, x, prompts, step=0)
    assert out.delta.abs().max().item() == pytest.approx(0.1)
    bad = PromptEmbeddings(cond=torch.full_like(prompts.cond, float("nan")), null=prompts.null)
    out = csd(omega1=1.0, omega2=0.0)(prior, x, bad, step=0)
    assert torch.isfinite(out.delta).all()
    with pytest.raises(RequestError, match="grad_clip"):
        CSDConfig(grad_mode="clamp")


def test_official_schedules():
    steps = [0, 2500, 5000, 5001, 10000]
    cif = get_preset("csd-if")
    assert [cif.schedule("omega2")(s) for s in steps] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert [cif.schedule("t_max")(s) for s in steps] == [0.98, 0.98, 0.98, 0.5, 0.5]
    assert [cif.schedule("t_min")(s) for s in steps] == [0.02] * 5
    assert [cif.schedule("omega1")(s) for s in steps] == [1.0] * 5
    ref = get_preset("csd-sd-refine")
    assert [ref.schedule("omega2")(s) for s in steps] == pytest.approx([1.0, 0.875, 0.75, 0.74995, 0.5])
    assert [ref.schedule("t_max")(s) for s in steps] == [0.5] * 5
    # threestudio C(): a 3-list gets start_step 0, a number is constant, values clamp outside the ramp
    assert Schedule.parse([2.0, 4.0, 100])(50) == 3.0
    assert Schedule.parse([10, 2.0, 4.0, 20])(0) == 2.0 and Schedule.parse([10, 2.0, 4.0, 20])(99) == 4.0
    assert Schedule.parse(7)(123456) == 7.0
    with pytest.raises(RequestError, match="end_step"):
        Schedule.parse([10, 1.0, 2.0, 10])


def test_official_coefficients_match_scale_form():
    """csd-if = cond 1, uncond [0,-0,-1,5000], null [0,-1,0,5000]; csd-sd-refine = cond 1, uncond [0,-1,-0.5,1e4],
    null [0,0,-0.5,1e4] (csd_reference.md §1a/§1b)."""
    g = build_guidance("csd-if")
    for s in [0, 1000, 2500, 5000, 7000]:
        c = g.coefficients(s)
        a = min(s / 5000, 1.0)
        assert (c.cond, c.neg, c.null, c.noise) == pytest.approx((1.0, -a, -(1 - a), 0.0))
    g = build_guidance("csd-sd-refine")
    for s in [0, 4000, 10000]:
        c = g.coefficients(s)
        b = s / 10000
        assert (c.cond, c.neg, c.null) == pytest.approx((1.0, -(1 - 0.5 * b), -0.5 * b))


def test_scaled_presets():
    g = build_guidance("csd-if", total_steps=100)
    assert g.config.omega2 == [0, 0.0, 1.0, 50] and g.config.t_max == [50, 0.98, 0.5, 51]
    assert g.config.schedule("t_max")(50) == 0.98 and g.config.schedule("t_max")(51) == 0.5
    g = build_guidance("csd-if", total_steps=10)  # the step change survives rounding
    assert g.config.t_max == [5, 0.98, 0.5, 6]
    toy = build_guidance("csd-toy", total_steps=300)
    assert toy.config.omega2 == [0, 0.0, 1.0, 150] and toy.config.grad_mode == "unit_l2"
    assert toy.config.t_max == 0.98   # no late drop to t ≤ 0.5 on the 32² toy prior (see presets.py)
    assert set(preset_names()) == {"csd-if", "csd-sd-refine", "sds-sd", "csd-edit", "csd-toy"}


def test_timestep_sampling_range_and_determinism(setup):
    prior, prompts, _, _ = setup
    g = build_guidance("csd-if")
    t_early = g.sample_timesteps(4000, 0, 1000, torch.Generator().manual_seed(1))
    t_late = g.sample_timesteps(4000, 5001, 1000, torch.Generator().manual_seed(1))
    assert t_early.min() == 20 and t_early.max() == 980
    assert t_late.min() == 20 and t_late.max() == 500
    x = torch.randn(8, C, H, W)
    a = g(prior, x.clone().requires_grad_(), prompts, 10, generator=torch.Generator().manual_seed(5))
    b = g(prior, x.clone().requires_grad_(), prompts, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.t, b.t) and torch.equal(a.delta, b.delta)
    assert len(set(a.t.tolist())) > 1  # one t per batch element


def test_branch_plan_drops_zero_weight_branches(setup):
    prior, prompts, x, _ = setup
    b = x.shape[0]
    g = build_guidance("csd-if")
    cases = [
        (0, prompts, ("cond", "null")),  # ω2 = 0: no negative branch
        (2500, prompts, ("cond", "neg", "null")),
        (5000, prompts, ("cond", "neg")),  # ω1 = ω2 = 1: null coefficient 0
        (8000, prompts, ("cond", "neg")),
        (2500, PromptEmbeddings(prompts.cond, prompts.null), ("cond", "null")),  # no neg prompt
        (2500, PromptEmbeddings(prompts.cond, prompts.null, prompts.null.clone()), ("cond", "null")),
    ]
    for step, p, expected in cases:
        prior.calls.clear()
        out = g(prior, x, p, step)
        assert out.branches == expected, (step, out.branches)
        assert len(prior.calls) == 1 and prior.calls[0]["n"] == len(expected) * b
        assert (out.unet_calls, out.unet_batch) == (1, len(expected) * b)
    prior.calls.clear()
    out = csd(omega1=0.0, omega2=0.0)(prior, x, prompts, 0)
    assert (out.unet_calls, out.unet_batch, len(prior.calls)) == (0, 0, 0) and out.delta.abs().sum() == 0


def test_control_images_and_per_sample_prompts_follow_branches(setup):
    prior, _, _, _ = setup
    b = 3
    x = torch.randn(b, C, H, W, requires_grad=True)
    cond = eps(11, b)  # one prompt per batch element
    prompts = PromptEmbeddings(cond=cond, null=eps(12), neg=eps(13))
    depth = torch.rand(b, 3, 8, 8)
    out = csd(omega1=1.0, omega2=0.5)(prior, x, prompts, 0, control={"depth": depth})
    ctrl = prior.calls[-1]["control"]["depth"]
    assert ctrl.shape == (3 * b, 3, 8, 8)
    for k in range(3):
        torch.testing.assert_close(ctrl[k * b : (k + 1) * b], depth)
    e0 = as_img(eps(12), b)
    torch.testing.assert_close(out.delta, cond.reshape(b, C, H, W) - e0 - 0.5 * (as_img(eps(13), b) - e0))


def test_build_guidance_errors_and_registry():
    assert GUIDANCE.get("csd") is CSDGuidance and GUIDANCE.get("sds") is SDSGuidance
    with pytest.raises(RequestError, match="unknown guidance preset 'nope'"):
        build_guidance("nope")
    with pytest.raises(RequestError, match="guidance.omega3"):
        build_guidance("csd-if", omega3=1.0)
    with pytest.raises(RequestError, match="weighting"):
        build_guidance("csd-if", weighting="cosine")
    with pytest.raises(RequestError, match="t_min"):
        build_guidance("csd-if", t_min=0.9)  # above t_max = 0.5 after step 5000
    assert isinstance(build_guidance(get_preset("sds-sd")), SDSGuidance)
    assert build_guidance("csd").config == CSDConfig() and build_guidance("sds", guidance_scale=7.5).config == SDSConfig(
        guidance_scale=7.5
    )
    assert build_guidance("csd-sd-refine", omega2=0.3).config.omega2 == 0.3


def test_perp_neg_adds_two_view_negatives_in_the_same_batched_call(setup):
    """csd-if with Perp-Neg: one UNet call of 5B (cond, neg, null, two view negatives) and the official term
    perpneg_scale · Σ w_i · perp(ε(neg_i) − ε(y_neg), ε(y) − ε(y_neg)) added to Eq. 10 before w(t)."""
    from engine.guidance.perp_neg import PerpNeg, perpendicular_component

    prior, prompts, x, (ey, eneg, e0) = setup
    n0, n1 = eps(4, 2), eps(5, 2)
    weights = torch.tensor([[-1.5, 0.3], [-0.2, -0.8]])
    pn = PerpNeg(negs=torch.stack([n0, n1], dim=1), weights=weights)
    with_pn = PromptEmbeddings(cond=prompts.cond, null=prompts.null, neg=prompts.neg, perp_neg=pn)
    g = build_guidance("csd-if", grad_mode="none")
    assert g.config.perpneg_scale == 3.0
    out = g(prior, x, with_pn, step=0)                      # ω2 = 0 at step 0: ε(y_neg) only for Perp-Neg
    assert (out.unet_calls, out.unet_batch) == (1, 10) and len(prior.calls) == 1
    e_n0, e_n1 = as_img(n0, 2), as_img(n1, 2)
    term = sum(weights[:, i].view(2, 1, 1, 1) * perpendicular_component(e - eneg, ey - eneg)
               for i, e in enumerate((e_n0, e_n1)))
    torch.testing.assert_close(out.delta, (ey - e0) + 3.0 * term)
    # the perpendicular component is orthogonal to the positive direction
    p = perpendicular_component(e_n0 - eneg, ey - eneg)
    assert (p * (ey - eneg)).sum(dim=(1, 2, 3)).abs().max() < 1e-4
    # without view negatives (texture task, toy prior) csd-if is unchanged: 3 branches... here ω2 = 0: 2
    out = g(prior, x, prompts, step=0)
    assert out.unet_batch == 4


def test_perp_neg_prompts_follow_threestudio_interpolation():
    from engine.guidance.perp_neg import perp_neg_prompts, shifted_exponential_decay
    from engine.render.cameras import orbit_from_angles

    views = {name: torch.full((1, 2, 3), float(i)) for i, name in enumerate(("side", "front", "back", "overhead"))}
    cams = orbit_from_angles(torch.tensor([0.0, 0.0, 0.0, 80.0]), torch.tensor([0.0, 45.0, 180.0, 10.0]),
                             torch.full((4,), 2.0), torch.full((4,), 50.0), 8, 8)
    pos, pn = perp_neg_prompts(views, cams.c2w)
    assert torch.allclose(pos[0], views["front"][0]) and torch.allclose(pos[2], views["back"][0])
    assert torch.allclose(pos[1], 0.5 * views["front"][0] + 0.5 * views["side"][0], atol=1e-5)
    assert torch.allclose(pos[3], views["overhead"][0]) and pn.weights[3].abs().sum() == 0
    assert abs(float(pn.weights[0, 0]) + shifted_exponential_decay(4, 0.5, -2.426, 1.0)) < 1e-5
    assert torch.allclose(pn.negs[0, 0], views["front"][0]) and torch.allclose(pn.negs[2, 1], views["front"][0])
