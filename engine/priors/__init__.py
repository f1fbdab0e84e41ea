"""Diffusion priors behind one interface (Stable Diffusion, DeepFloyd IF, ControlNet, the toy prior)."""

from engine.priors.base import Prior
from engine.priors.controlnet import DEFAULT_CONTROLNET_IDS, ControlNetStack, canny_edges, depth_to_control
from engine.priors.loader import available_priors, load_prior, loaded_priors, release_priors
from engine.priors.pixel import PixelPrior
from engine.priors.stable_diffusion import StableDiffusionPrior

__all__ = [
    "DEFAULT_CONTROLNET_IDS",
    "ControlNetStack",
    "PixelPrior",
    "Prior",
    "StableDiffusionPrior",
    "canny_edges",
    "available_priors",
    "depth_to_control",
    "load_prior",
    "loaded_priors",
    "release_priors",
]
