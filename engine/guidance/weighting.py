"""Timestep weightings w(t) and gradient post-processing, as in the official CSD / threestudio guidance code."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import RequestError

WEIGHTINGS = ("uniform", "sds", "fantasia3d")
GRAD_MODES = ("none", "unit_l2", "clamp")


def timestep_weight(name: str, alphas_cumprod: Tensor, t: Tensor) -> Tensor:
    """w(t) per batch element (csd_reference.md §1a step 6).

    - `uniform`: 1 (all official CSD IF configs)
    - `sds`: 1 − ᾱ_t (DreamFusion; hard-coded in the official CSD Stable Diffusion guidance)
    - `fantasia3d`: sqrt(ᾱ_t)·(1 − ᾱ_t)

    Args:
        name: one of WEIGHTINGS.
        alphas_cumprod: (T,) cumulative products ᾱ of the prior's noise schedule.
        t: (B,) integer timesteps.

    Returns:
        (B,) float32 weights on t's device.
    """
    a = alphas_cumprod.to(device=t.device, dtype=torch.float32)[t]
    if name == "uniform":
        return torch.ones_like(a)
    if name == "sds":
        return 1.0 - a
    if name == "fantasia3d":
        return a.sqrt() * (1.0 - a)
    raise RequestError("guidance.weighting", f"must be one of {', '.join(WEIGHTINGS)}, got {name!r}")


def postprocess_grad(grad: Tensor, mode: str, clamp_value: float | None = None) -> Tensor:
    """nan_to_num, then the chosen post-processing (csd_reference.md §1a step 8).

    - `none`: nothing else (the official Stable Diffusion stage).
    - `unit_l2`: grad / (‖grad‖₂ + 1e-8) with ONE global norm over the whole (B,C,H,W) tensor
      (the official DeepFloyd IF stage; `grad_normalize=True`).
    - `clamp`: clamp to ±clamp_value (threestudio `grad_clip`).

    Args:
        grad: (B,C,H,W) gradient δ.
        mode: one of GRAD_MODES.
        clamp_value: bound for `clamp` (> 0).
    """
    grad = torch.nan_to_num(grad)
    if mode == "none":
        return grad
    if mode == "unit_l2":
        return grad / (grad.norm(2) + 1e-8)
    if mode == "clamp":
        if clamp_value is None or clamp_value <= 0:
            raise RequestError("guidance.grad_clip", f"clamp mode needs a value > 0, got {clamp_value!r}")
        return grad.clamp(-clamp_value, clamp_value)
    raise RequestError("guidance.grad_mode", f"must be one of {', '.join(GRAD_MODES)}, got {mode!r}")
