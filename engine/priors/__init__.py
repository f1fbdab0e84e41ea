"""Diffusion priors behind one interface (Stable Diffusion, DeepFloyd IF, ControlNet, the toy prior), loaded with
diffusers/transformers `from_pretrained`. May import device_info, errors and _optional; nothing above."""

from .base import Prior
from .controlnet import DEFAULT_CONTROLNET_IDS, ControlNetStack, canny_edges, depth_to_control
from .loader import available_priors, load_prior, loaded_priors, release_priors
from .pixel import PixelPrior
from .stable_diffusion import StableDiffusionPrior

__all__ = [
    "DEFAULT_CONTROLNET_IDS",
    "ControlNetStack",
    "PixelPrior",
    "Prior",
    "StableDiffusionPrior",
    "available_priors",
    "canny_edges",
    "depth_to_control",
    "load_prior",
    "loaded_priors",
    "release_priors",
]
