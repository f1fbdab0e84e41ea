"""Classifier Score Distillation (Yu et al., ICLR 2024, Eq. 10 and the editing form Eq. 11)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..registry import GUIDANCE
from .base import GuidanceConfig, ScoreGuidance
from .plan import BranchPlan, Coefficients, combine
from .schedule import ScheduleSpec


@dataclass(frozen=True)
class CSDConfig(GuidanceConfig):
    """CSD settings: ω1 (classifier weight of y) and ω2 (weight of the negative prompt), both schedulable.

    Attributes:
        omega1: ω1 of Eq. 10 (official: 1.0 everywhere).
        omega2: ω2 of Eq. 10 (official IF: `[0, 0, 1, 5000]`; SD refine: `[0, 1, 0.5, 10000]`).
        anchor: λ of a generative anchor term λ·(ε(y) − ε) added to Eq. 10 (0: the paper's plain CSD). The
            classifier direction alone pushes whatever is not "y" away from y — on a colour prompt, towards the
            complementary colour; the anchor (an SDS term without guidance scale) pulls renders back towards images
            the prior would generate, where a pattern's second colour is neutral. Schedulable.
        parallel: η, the weight kept of the classifier direction's component parallel to ε(y), per sample, as
            adaptive projected guidance does (APG, Sadat et al. 2024; csd_reference.md §6): with Δ the Eq. 10
            direction, Δ_∥ = (⟨Δ, ε(y)⟩ / ‖ε(y)‖²)·ε(y) and Δ ← Δ − (1 − η)·Δ_∥ (1: plain CSD; APG uses 0, the part
            that saturates). The anchor term is not projected. Schedulable.
    """

    kind: ClassVar[str] = "csd"
    schedule_fields: ClassVar[tuple[str, ...]] = ("t_min", "t_max", "omega1", "omega2", "anchor", "parallel")

    omega1: ScheduleSpec = 1.0
    omega2: ScheduleSpec = 1.0
    anchor: ScheduleSpec = 0.0
    parallel: ScheduleSpec = 1.0


@GUIDANCE.register("csd")
class CSDGuidance(ScoreGuidance):
    """Classifier Score Distillation.

    Paper Eq. 10 (Yu et al., "Text-to-3D with Classifier Score Distillation", ICLR 2024):

        δ = w(t) · [ ω1·(ε(x_t; y) − ε(x_t; ∅)) − ω2·(ε(x_t; y_neg) − ε(x_t; ∅)) ]
          = w(t) · [ ω1·ε(y) + (ω2 − ω1)·ε(∅) − ω2·ε(y_neg) ]

    There is no −ε noise term. Editing (Eq. 11) is the same formula with y = the target prompt and
    y_neg = the edit/source prompt. In the official code's scale form (csd_reference.md §1a) this is
    cond_scale = ω1, uncond_scale = −ω2 (its "uncond" is the negative prompt), null_scale = ω2 − ω1,
    noise_scale = 0. Branches with a zero total coefficient are not evaluated.

    Args:
        config: a `CSDConfig`.
    """

    config: CSDConfig
    config_class = CSDConfig

    def coefficients(self, step: int) -> Coefficients:
        """(cond, neg, null, noise) = (ω1 + λ, −ω2, ω2 − ω1, −λ) at `step` (λ: the anchor, 0 by default)."""
        w1 = self.config.schedule("omega1")(step)
        w2 = self.config.schedule("omega2")(step)
        lam = self.config.schedule("anchor")(step)
        return Coefficients(cond=w1 + lam, neg=-w2, null=w2 - w1, noise=-lam)

    def direction(self, plan: BranchPlan, eps: Mapping[str, Tensor], noise: Tensor, step: int) -> Tensor:
        """Eq. 10 (+ the anchor); with `parallel` η ≠ 1 the classifier part's component along ε(y) is scaled by η."""
        delta = combine(plan, eps, noise)
        eta = self.config.schedule("parallel")(step)
        if eta == 1.0 or "cond" not in eps:
            return delta
        lam = self.config.schedule("anchor")(step)
        anchor = lam * (eps["cond"] - noise) if lam else 0.0
        cls = delta - anchor
        ref = eps["cond"].flatten(1)
        coef = (cls.flatten(1) * ref).sum(1) / ref.pow(2).sum(1).clamp_min(1e-12)
        return cls - (1.0 - eta) * coef.view(-1, *([1] * (cls.dim() - 1))) * eps["cond"] + anchor
