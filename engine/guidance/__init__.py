"""Score-distillation guidance: CSD (paper Eq. 10/11), SDS, schedules and presets."""

from engine.guidance.base import GuidanceConfig, GuidanceOutput, ScoreGuidance
from engine.guidance.csd import CSDConfig, CSDGuidance
from engine.guidance.plan import BranchPlan, Coefficients, PromptEmbeddings, plan_branches
from engine.guidance.presets import PRESETS, auto_preset, build_guidance, get_preset, preset_names
from engine.guidance.schedule import Schedule
from engine.guidance.sds import SDSConfig, SDSGuidance
from engine.guidance.weighting import postprocess_grad, timestep_weight

__all__ = [
    "BranchPlan",
    "CSDConfig",
    "CSDGuidance",
    "Coefficients",
    "GuidanceConfig",
    "GuidanceOutput",
    "PRESETS",
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
