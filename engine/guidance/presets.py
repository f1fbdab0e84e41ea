"""Named guidance presets (the official CSD configs and our documented choices) and `build_guidance`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RequestError
from ..registry import GUIDANCE
from .base import GuidanceConfig, ScoreGuidance
from .csd import CSDConfig
from .sds import SDSConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..priors.base import Prior

OFFICIAL_NEGATIVE_PROMPT = "oversaturated color, ugly, tiling, low quality, noisy"
TOY_DEFAULT_STEPS = 400

# `configs/csd-if-object.yaml` (csd_reference.md §1a/§2a): cond 1, uncond [0,-0,-1,5000], null [0,-1,0,5000]
# ⇔ ω1 = 1, ω2 0 → 1 over steps 0-5000; t_max steps from 0.98 to 0.5 after step 5000; uniform w; unit-L2.
# Perp-Neg (csd-if.yaml; not csd-if-object.yaml) with perpneg_scale 3: it applies when a task passes view negatives
# (PromptEmbeddings.perp_neg; text to mesh on real priors does), so the texture task keeps csd-if-object's form.
CSD_IF = CSDConfig(
    name="csd-if", omega1=1.0, omega2=[0, 0.0, 1.0, 5000], t_min=0.02, t_max=[5000, 0.98, 0.5, 5001],
    weighting="uniform", grad_mode="unit_l2", negative_prompt=OFFICIAL_NEGATIVE_PROMPT,
    reference_steps=10000, perpneg_scale=3.0,
)

# `configs/csd-sd-refine.yaml` (§1b/§2b): cond 1, uncond [0,-1,-0.5,10000], null [0,0,-0.5,10000]
# ⇔ ω1 = 1, ω2 1 → 0.5 over 10000 steps; t ∈ [0.02, 0.5]; w = 1 − ᾱ_t; no normalisation.
CSD_SD_REFINE = CSDConfig(
    name="csd-sd-refine", omega1=1.0, omega2=[0, 1.0, 0.5, 10000], t_min=0.02, t_max=0.5, weighting="sds",
    grad_mode="none", negative_prompt=OFFICIAL_NEGATIVE_PROMPT, reference_steps=10000,
)

# threestudio DreamFusion-SD (§3): guidance_scale 100 (threestudio) = 101 (diffusers), sds weighting, t ∈ [0.02, 0.98].
SDS_SD = SDSConfig(
    name="sds-sd", guidance_scale=101.0, t_min=0.02, t_max=0.98, weighting="sds", grad_mode="none",
    negative_prompt="", reference_steps=10000,
)

# Editing (paper Eq. 11; no official config, csd_reference.md §2d): y = target prompt, y_neg = the edit/source
# description, ω1 = ω2 = 1, i.e. δ = ε(y_target) − ε(y_edit): the null branch drops out (2 UNet branches) and
# everything the two prompts share cancels, so only the requested change is pushed. Timesteps follow csd-if
# (the full range first, then t ≤ 0.5 for detail); uniform w and unit-L2 keep the step size independent of the
# prior, since editing runs on pixel and latent priors alike. `negative_prompt` is unused: tasks pass the edit prompt.
CSD_EDIT = CSDConfig(
    name="csd-edit", omega1=1.0, omega2=1.0, t_min=0.02, t_max=[5000, 0.98, 0.5, 5001], weighting="uniform",
    grad_mode="unit_l2", negative_prompt="", reference_steps=10000,
)

# The bundled toy prior: csd-if rescaled to a short CPU run; its vocabulary has no words for the official
# negative prompt, so there is none (ω2 then multiplies ε(∅) − ε(∅) = 0 and the null branch carries −ω1).
# t keeps the full [0.02, 0.98] range for the whole run: the official late drop to t ≤ 0.5 refines detail on a
# 64² IF render, but on the 32² toy prior the classifier direction at t ≤ 0.5 is mostly pattern and background
# evidence, and Adam (eps 1e-15, scale-free) drives the weakly seen parts of a mesh to "background" colours —
# light, complementary tints (measured: "a blue sphere" on Spot, 150 steps, object pixels in the blue family or
# neutral 0.47 with the drop, 0.76 without; bench/README.md).
CSD_TOY = GuidanceConfig.scaled(CSD_IF, TOY_DEFAULT_STEPS).replace(name="csd-toy", negative_prompt="",
                                                                  perpneg_scale=0.0, t_max=0.98)

PRESETS: dict[str, GuidanceConfig] = {c.name: c for c in (CSD_IF, CSD_SD_REFINE, SDS_SD, CSD_EDIT, CSD_TOY)}


def preset_names() -> list[str]:
    """The preset names, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> GuidanceConfig:
    """The preset config called `name`; a formula name ("csd", "sds") gives that formula's default config;
    unknown names raise RequestError listing the known ones.

    Args:
        name: a preset name or a registered formula name.
    """
    if name not in PRESETS and name in GUIDANCE:
        return GUIDANCE.get(name).config_class()
    try:
        return PRESETS[name]
    except KeyError:
        raise RequestError(
            "guidance", f"unknown guidance preset {name!r}; known: {', '.join(preset_names())}"
        ) from None


def auto_preset(prior: Prior) -> str:
    """The preset `guidance="auto"` means for a prior: csd-toy, csd-if (pixel) or csd-sd-refine (latent).

    Args:
        prior: a loaded Prior (uses its `family`).
    """
    family = getattr(prior, "family", "")
    if family == "toy":
        return "csd-toy"
    return "csd-sd-refine" if family == "sd" else "csd-if"


def build_guidance(
    name_or_config: str | GuidanceConfig, total_steps: int | None = None, **overrides
) -> ScoreGuidance:
    """A guidance object from a preset name or a config.

    Args:
        name_or_config: a preset name (see `preset_names()`) or a `CSDConfig` / `SDSConfig`.
        total_steps: when given, step breakpoints are rescaled from the config's `reference_steps`
            (the official runs are 10000 steps) to this run length, before the overrides apply.
        **overrides: config fields to replace, e.g. `omega2=0.5`, `t_max=[0, 0.98, 0.5, 300]`.
    """
    config = get_preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if not isinstance(config, GuidanceConfig):
        raise RequestError(
            "guidance", f"must be a preset name or a GuidanceConfig, got {type(config).__name__}"
        )
    if total_steps is not None:
        config = config.scaled(total_steps)
    if overrides:
        config = config.replace(**overrides)
    return GUIDANCE.get(config.kind)(config)
