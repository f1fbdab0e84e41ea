"""Score Distillation Sampling (Poole et al., DreamFusion, 2022), the baseline CSD is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import GUIDANCE
from .base import GuidanceConfig, ScoreGuidance
from .plan import Coefficients
from .schedule import ScheduleSpec


@dataclass(frozen=True)
class SDSConfig(GuidanceConfig):
    """SDS settings.

    Attributes:
        guidance_scale: classifier-free guidance scale s in the **diffusers** convention
            ε̂ = ε(∅) + s·(ε(y) − ε(∅)). threestudio writes ε̂ = ε(y) + s_ts·(ε(y) − ε(∅)), so
            s = s_ts + 1: threestudio's default `guidance_scale 100` (DreamFusion-SD) is s = 101 here.
    """

    kind: ClassVar[str] = "sds"
    schedule_fields: ClassVar[tuple[str, ...]] = ("t_min", "t_max", "guidance_scale")

    guidance_scale: ScheduleSpec = 101.0
    weighting: str = "sds"


@GUIDANCE.register("sds")
class SDSGuidance(ScoreGuidance):
    """Score Distillation Sampling with classifier-free guidance.

    DreamFusion (Poole et al., 2022, Eq. 3), written with ω = s − 1 (threestudio's scale, csd_reference.md §3):

        δ = w(t) · [ ε(y) + ω·(ε(y) − ε(∅)) − ε ] = w(t) · [ ε(∅) + s·(ε(y) − ε(∅)) − ε ]

    with s the diffusers-convention `guidance_scale`. At s = 1 (ω = 0) this is ε(y) − ε. When a negative prompt
    is given it replaces ∅ in the unconditional branch (as diffusers' `negative_prompt`), so the coefficients are
    cond = s, neg = 1 − s, noise = −1; with no negative prompt the neg branch is merged into null.

    Args:
        config: an `SDSConfig`.
    """

    config: SDSConfig
    config_class = SDSConfig

    def coefficients(self, step: int) -> Coefficients:
        """(cond, neg, null, noise) = (s, 1 − s, 0, −1) at `step`."""
        s = self.config.schedule("guidance_scale")(step)
        return Coefficients(cond=s, neg=1.0 - s, null=0.0, noise=-1.0)
