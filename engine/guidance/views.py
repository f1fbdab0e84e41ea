"""View-dependent prompting: ", front view" / ", side view" / ", back view" / ", overhead view" per camera.

threestudio's prompt processor (used with `view_dependent_prompting=True` by every official CSD config) picks
the suffix from the camera's azimuth and elevation around the object: side by default, front within
±`front_deg` of the front, back within `back_deg` of the back, overhead above `overhead_deg` (later rules win).
Here azimuth 0 is Blender's front view (camera on −Y looking +Y), as in `engine.render.cameras`.
"""
from __future__ import annotations

import torch
from torch import Tensor

VIEWS = ("side", "front", "back", "overhead")
FRONT_DEG, BACK_DEG, OVERHEAD_DEG = 45.0, 45.0, 60.0   # threestudio's defaults


def view_names(c2w: Tensor, target: tuple[float, float, float] = (0.0, 0.0, 0.0), front_deg: float = FRONT_DEG,
               back_deg: float = BACK_DEG, overhead_deg: float = OVERHEAD_DEG) -> list[str]:
    """The view word of each camera.

    Args:
        c2w: (B, 4, 4) camera-to-world matrices (Blender convention, Z up).
        target: the point the views are named around (the normalised object's centre).
        front_deg, back_deg, overhead_deg: threestudio's thresholds in degrees.
    Returns:
        B names from VIEWS.
    """
    p = c2w[:, :3, 3].double() - torch.tensor(target, dtype=torch.float64, device=c2w.device)
    azimuth = torch.rad2deg(torch.atan2(p[:, 0], -p[:, 1]))                 # (-180, 180], 0 = front
    elevation = torch.rad2deg(torch.atan2(p[:, 2], torch.hypot(p[:, 0], p[:, 1])))
    names = []
    for az, el in zip(azimuth.tolist(), elevation.tolist()):
        name = "side"
        if -front_deg < az < front_deg:
            name = "front"
        if az > 180.0 - back_deg or az < -180.0 + back_deg:
            name = "back"
        if el > overhead_deg:
            name = "overhead"
        names.append(name)
    return names


def view_prompt(prompt: str, view: str) -> str:
    """`prompt` with threestudio's suffix for `view` ("a red car" -> "a red car, back view")."""
    return f"{prompt}, {view} view"
