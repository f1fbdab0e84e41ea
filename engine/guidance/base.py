"""The shared score-distillation step: sample t and ε, one batched prior call, weight, post-process, loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RequestError
from .perp_neg import perp_neg_term
from .plan import Coefficients, PromptEmbeddings, combine, ensure_branches, evaluate_branches, plan_branches
from .schedule import Schedule, ScheduleSpec
from .weighting import GRAD_MODES, WEIGHTINGS, postprocess_grad, timestep_weight

if TYPE_CHECKING:  # pragma: no cover
    from ..priors.base import Prior


@dataclass(frozen=True)
class GuidanceConfig:
    """Settings shared by every score-distillation formula. Schedules use `Schedule` specs (number or list).

    Attributes:
        name: preset name (for logs and result metadata).
        t_min, t_max: timestep range as fractions of the prior's T; t ~ U{int(T·t_min) .. int(T·t_max)}.
        weighting: w(t), one of `uniform`, `sds`, `fantasia3d`.
        grad_mode: post-processing, one of `none`, `unit_l2`, `clamp`.
        grad_clip: the ± bound for `clamp`.
        negative_prompt: the preset's recommended negative prompt ("" = none); tasks may override it.
        reference_steps: the run length the step breakpoints were written for (`scaled` rescales from it).
        perpneg_scale: weight of the Perp-Neg term (official csd-if: 3); it applies only when the prompts carry
            view negatives (`PromptEmbeddings.perp_neg`), which the tasks build for real priors.
    """

    kind: ClassVar[str] = ""
    schedule_fields: ClassVar[tuple[str, ...]] = ("t_min", "t_max")

    name: str = "custom"
    t_min: ScheduleSpec = 0.02
    t_max: ScheduleSpec = 0.98
    weighting: str = "uniform"
    grad_mode: str = "none"
    grad_clip: float | None = None
    negative_prompt: str = ""
    reference_steps: int = 10000
    perpneg_scale: float = 0.0

    def __post_init__(self) -> None:
        for f in self.schedule_fields:
            Schedule.parse(getattr(self, f), f"guidance.{f}")
        if self.weighting not in WEIGHTINGS:
            raise RequestError(
                "guidance.weighting", f"must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}"
            )
        if self.grad_mode not in GRAD_MODES:
            raise RequestError(
                "guidance.grad_mode", f"must be one of {', '.join(GRAD_MODES)}, got {self.grad_mode!r}"
            )
        if self.grad_mode == "clamp" and (self.grad_clip is None or self.grad_clip <= 0):
            raise RequestError(
                "guidance.grad_clip", f"grad_mode 'clamp' needs grad_clip > 0, got {self.grad_clip!r}"
            )
        if not isinstance(self.reference_steps, int) or self.reference_steps < 1:
            raise RequestError(
                "guidance.reference_steps", f"must be an integer >= 1, got {self.reference_steps!r}"
            )
        lo_s, hi_s = self.schedule("t_min"), self.schedule("t_max")
        for s in {0, lo_s.start_step, lo_s.end_step, hi_s.start_step, hi_s.end_step}:
            lo, hi = lo_s(s), hi_s(s)
            if not (0.0 <= lo <= hi <= 1.0):
                raise RequestError(
                    "guidance.t_min",
                    f"need 0 <= t_min <= t_max <= 1 at every step, got {lo} and {hi} at step {s}",
                )

    def schedule(self, field: str) -> Schedule:
        """The parsed `Schedule` of a schedule field.

        Args:
            field: one of `schedule_fields`.
        """
        return Schedule.parse(getattr(self, field), f"guidance.{field}")

    def scaled(self, total_steps: int) -> GuidanceConfig:
        """A copy whose step-based breakpoints are rescaled from `reference_steps` to `total_steps`.

        Args:
            total_steps: the planned number of optimisation steps (>= 1).
        """
        if not isinstance(total_steps, int) or total_steps < 1:
            raise RequestError("total_steps", f"must be an integer >= 1, got {total_steps!r}")
        factor = total_steps / self.reference_steps
        specs = {f: self.schedule(f).scaled(factor).to_spec() for f in self.schedule_fields}
        return dataclasses.replace(self, reference_steps=total_steps, **specs)

    def replace(self, **overrides) -> GuidanceConfig:
        """A validated copy with some fields replaced; unknown names raise RequestError.

        Args:
            **overrides: field name → value.
        """
        known = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known:
                raise RequestError(
                    f"guidance.{key}",
                    f"unknown setting for {self.kind} guidance; known: {', '.join(sorted(known))}",
                )
        return dataclasses.replace(self, **overrides)


@dataclass
class GuidanceOutput:
    """One guidance step.

    Attributes:
        loss: scalar 0.5·‖x − stopgrad(x − δ)‖²_sum / B (the official reduction): ∂loss/∂x = δ / B,
            i.e. δ per sample (exactly δ for B = 1).
        delta: (B, C, h, w) the gradient δ after weighting and post-processing (detached).
        t: (B,) sampled timesteps.
        unet_calls: prior.predict_noise calls made (1, or 0 when no branch is needed).
        unet_batch: samples in that call (k·B).
        branches: the evaluated branches in batch order.
        raw_loss: scalar 0.5·‖w(t)·δ‖²_sum / B before post-processing (unit-L2 normalisation, clipping), detached
            and left on the device (no host sync per step): what progress reports, since `loss` is a constant under
            unit-L2.
    """

    loss: Tensor
    delta: Tensor
    t: Tensor
    unet_calls: int
    unet_batch: int
    branches: tuple[str, ...] = ()
    raw_loss: Tensor | None = None


class ScoreGuidance:
    """Base class: subclasses give the per-branch coefficients of their formula at a step."""

    config: GuidanceConfig

    def __init__(self, config: GuidanceConfig):
        self.config = config

    def coefficients(self, step: int) -> Coefficients:  # pragma: no cover - abstract
        """δ/w(t) as cond·ε(y) + neg·ε(y_neg) + null·ε(∅) + noise·ε at `step`."""
        raise NotImplementedError

    def timestep_range(self, step: int, num_train_timesteps: int) -> tuple[int, int]:
        """(low, high) for randint: low = int(T·t_min), high = int(T·t_max) + 1 (exclusive), as the official code.

        Args:
            step: optimisation step.
            num_train_timesteps: T of the prior.
        """
        lo = int(num_train_timesteps * self.config.schedule("t_min")(step))
        hi = int(num_train_timesteps * self.config.schedule("t_max")(step))
        hi = min(hi, num_train_timesteps - 1)
        return lo, max(hi, lo) + 1

    def sample_timesteps(
        self, batch_size: int, step: int, num_train_timesteps: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B,) int64 timesteps, one per batch element, on the generator's device (CPU when None)."""
        lo, hi = self.timestep_range(step, num_train_timesteps)
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(lo, hi, (batch_size,), generator=generator, device=device)

    def __call__(
        self,
        prior: Prior,
        x: Tensor,
        prompts: PromptEmbeddings,
        step: int,
        control: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> GuidanceOutput:
        """Compute δ for the model-space batch x and the reparameterised loss.

        Args:
            prior: the diffusion prior (one batched predict_noise call).
            x: (B, C, h, w) model-space input (`prior.to_model_space(render)`), requires grad.
            prompts: the branch embeddings.
            step: the optimisation step (drives every schedule).
            control: optional ControlNet images (1|B, 3, H, W) per condition name.
            generator: torch.Generator for t and ε (reproducible runs).
        """
        b = x.shape[0]
        t = self.sample_timesteps(b, step, prior.num_train_timesteps, generator).to(x.device)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=torch.float32).to(x.device)
        plan = plan_branches(self.coefficients(step), prompts.neg_is_null())
        pn = prompts.perp_neg if self.config.perpneg_scale else None
        extra, ref = None, "null" if prompts.neg_is_null() else "neg"
        if pn is not None:   # Perp-Neg needs ε(y) and ε(y_neg) even where their coefficients are 0: 5B in one call
            plan = ensure_branches(plan, ("cond", ref))
            extra = {"perp_neg_0": pn.negs[:, 0], "perp_neg_1": pn.negs[:, 1]}
        with torch.no_grad():
            x_t = prior.add_noise(x.detach().float(), noise, t)
            eps = evaluate_branches(prior, plan, x_t, t, prompts, control, extra=extra)
            delta = combine(plan, eps, noise)
            if pn is not None:
                delta = delta + self.config.perpneg_scale * perp_neg_term(
                    eps["cond"], eps[ref], [eps["perp_neg_0"], eps["perp_neg_1"]], pn.weights.to(delta.device))
            w = timestep_weight(self.config.weighting, prior.alphas_cumprod, t).view(
                b, *([1] * (x.dim() - 1))
            )
            delta = w * delta
            raw_loss = 0.5 * delta.float().pow(2).sum() / b
            delta = postprocess_grad(delta, self.config.grad_mode, self.config.grad_clip)
        target = (x - delta.to(x.dtype)).detach()
        loss = 0.5 * F.mse_loss(x, target, reduction="sum") / b
        return GuidanceOutput(
            loss=loss,
            delta=delta,
            t=t,
            unet_calls=1 if plan.k else 0,
            unet_batch=(plan.k + len(extra or ())) * b,
            branches=plan.branches + tuple(extra or ()),
            raw_loss=raw_loss,
        )
