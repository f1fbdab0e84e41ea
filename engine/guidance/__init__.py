"""Score-distillation guidance: CSD (paper Eq. 10/11), SDS, Perp-Neg, schedules, presets, branch planning and the
view-dependent prompt embeddings every task asks for. May import priors/ (the Prior interface), the registry and
errors; never tasks/ or anything above."""

from .base import GuidanceConfig, GuidanceOutput, ScoreGuidance
from .csd import CSDConfig, CSDGuidance
from .plan import BranchPlan, Coefficients, PromptEmbeddings, plan_branches
from .presets import PRESETS, auto_preset, build_guidance, get_preset, preset_names
from .schedule import Schedule
from .sds import SDSConfig, SDSGuidance
from .weighting import postprocess_grad, timestep_weight

__all__ = [
    "PRESETS",
    "BranchPlan",
    "CSDConfig",
    "CSDGuidance",
    "Coefficients",
    "GuidanceConfig",
    "GuidanceOutput",
    "PromptEmbeddings",
    "SDSConfig",
    "SDSGuidance",
    "Schedule",
    "ScoreGuidance",
    "auto_preset",
    "build_guidance",
    "get_preset",
    "plan_branches",
    "postprocess_grad",
    "preset_names",
    "timestep_weight",
]
