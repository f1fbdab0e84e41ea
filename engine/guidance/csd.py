"""Classifier Score Distillation (Yu et al., ICLR 2024, Eq. 10 and the editing form Eq. 11)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import GUIDANCE
from .base import GuidanceConfig, ScoreGuidance
from .plan import Coefficients
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
    """

    kind: ClassVar[str] = "csd"
    schedule_fields: ClassVar[tuple[str, ...]] = ("t_min", "t_max", "omega1", "omega2", "anchor")

    omega1: ScheduleSpec = 1.0
    omega2: ScheduleSpec = 1.0
    anchor: ScheduleSpec = 0.0


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
