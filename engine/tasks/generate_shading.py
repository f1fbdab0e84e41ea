"""What a generate-stage batch shows the prior: albedo, the normal map (real priors), or grey Lambertian
shading (the toy prior), following the official CSD material schedule (csd_reference.md §2a).

Official (`textureless_normal: true`, `diffuse_prob 0.5`, `textureless_prob 1.0`): albedo only until
`ambient_only_steps`, then half the batches albedo and half the normal map `n·0.5 + 0.5`. The toy prior never
saw normal maps; it saw grey, textureless, shaded renders captioned with the shape alone, so for it the
"normal" batches are grey Lambertian renders (light near the camera, as threestudio's "dreamfusion" light
strategy) and their prompt keeps only the shape words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GREY_ALBEDO, AMBIENT, DIFFUSE = 0.75, 0.35, 0.65


def choose_shading(step: int, ambient_only_steps: int, generator: torch.Generator) -> str:
    """ "albedo" or "geometry" for this batch: albedo during the warm-up, then each with probability 0.5.

    Args:
        step: 0-based step of the stage.
        ambient_only_steps: warm-up length (steps).
        generator: CPU generator (one draw per batch after the warm-up).
    """
    if step < ambient_only_steps:
        return "albedo"
    return "geometry" if float(torch.rand(1, generator=generator)) < 0.5 else "albedo"


def geometry_colour(normal: Tensor, light_dir: Tensor, toy: bool) -> Tensor:
    """Per-pixel foreground colour of a geometry batch (before multiplying by opacity).

    Args:
        normal: (B, H, W, 3) world-space normals (any length; normalised here).
        light_dir: (B, 3) unit direction towards the light.
        toy: grey Lambertian shading (toy prior) instead of the normal map.
    Returns:
        (B, H, W, 3) in [0, 1].
    """
    n = F.normalize(normal, dim=-1, eps=1e-6)
    if not toy:
        return n * 0.5 + 0.5
    lambert = (n * light_dir[:, None, None, :]).sum(-1, keepdim=True).clamp_min(0.0)
    return (GREY_ALBEDO * (AMBIENT + DIFFUSE * lambert)).expand(*n.shape[:-1], 3)


def light_directions(c2w: Tensor, generator: torch.Generator, perturb: float = 0.1) -> Tensor:
    """(B, 3) unit directions towards a light near each camera (camera direction + N(0, perturb) noise).

    Args:
        c2w: (B, 4, 4) cameras looking at the origin.
        generator: CPU generator.
        perturb: standard deviation of the perturbation (official `light_position_perturb 0.1`).
    """
    eye = F.normalize(c2w[:, :3, 3], dim=-1)
    noise = torch.randn(eye.shape, generator=generator).to(eye.device) * perturb
    return F.normalize(eye + noise, dim=-1)


def shape_prompt(prompt: str, shapes: tuple[str, ...]) -> str:
    """The toy prompt of a geometry batch: "a" and the shape words only ("a red striped cube" → "a cube");
    "" (unconditional) when no shape word is present.

    Args:
        prompt: the user's prompt.
        shapes: the prior's shape vocabulary.
    """
    words = [w for w in prompt.lower().replace(",", " ").split() if w in shapes]
    return "a " + " ".join(words) if words else ""
