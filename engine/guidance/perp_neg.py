"""Perp-Neg (Armandpour et al. 2023) as the official `csd-if.yaml` uses it: view-interpolated positive prompts
and two view negatives per camera whose guidance is projected perpendicular to the positive direction.

threestudio's prompt processor (`get_text_embeddings_perp_neg`, csd_reference.md §1a step 12): azimuth a in
(−180, 180], 0 = front. Overhead views use the overhead prompt and no negatives. For |a| < 90 (front–side),
r = 1 − |a|/90, the positive is r·front + (1 − r)·side and the negatives are (front, side) with weights
−f_fs(r), −f_sf(1 − r); otherwise (side–back) r = 2 − |a|/90, the positive is r·side + (1 − r)·back and the
negatives are (side, front) with weights −f_sb(r), −f_fsb(r); f(a, b, c; r) = a·exp(−b·r) + c. In the CSD
guidance the extra term is `perpneg_scale · w(t) · Σ_i w_i · perp(ε(neg_i) − ε(y_neg), ε(y) − ε(y_neg))`,
where y_neg is the negative prompt ("uncond" in the official code) and perp(x, y) = x − (⟨x, y⟩ / ‖y‖²)·y per
sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .views import view_names

F_SB = (1.0, 0.5, -0.606)  # threestudio perp_neg_f_sb
F_FSB = (1.0, 0.5, 0.967)  # perp_neg_f_fsb
F_FS = (4.0, 0.5, -2.426)  # perp_neg_f_fs
F_SF = (4.0, 0.5, -2.426)  # perp_neg_f_sf


@dataclass
class PerpNeg:
    """Per-camera view negatives for one step.

    Attributes:
        negs: (B, 2, L, D) embeddings of the two view negatives.
        weights: (B, 2) their (negative) guidance weights.
    """

    negs: Tensor
    weights: Tensor


def shifted_exponential_decay(a: float, b: float, c: float, r: float) -> float:
    """a·exp(−b·r) + c (threestudio's `shifted_expotional_decay`)."""
    return a * math.exp(-b * r) + c


def perp_neg_prompts(view_embeddings: dict[str, Tensor], c2w: Tensor) -> tuple[Tensor, PerpNeg]:
    """Positive embeddings and view negatives for a batch of cameras.

    Args:
        view_embeddings: "side" / "front" / "back" / "overhead" → (1, L, D) embeddings of the view prompts.
        c2w: (B, 4, 4) cameras around the origin (Blender frame, azimuth 0 = front on −Y).
    Returns:
        positive (B, L, D) and PerpNeg(negs (B, 2, L, D), weights (B, 2)).
    """
    side, front, back = (view_embeddings[k][0] for k in ("side", "front", "back"))
    overhead = view_embeddings["overhead"][0]
    p = c2w[:, :3, 3].double()
    azimuths = torch.rad2deg(torch.atan2(p[:, 0], -p[:, 1])).tolist()
    pos, negs, weights = [], [], []
    for name, az in zip(view_names(c2w), azimuths):
        if name == "overhead":
            pos.append(overhead)
            negs.append(torch.stack([overhead, overhead]))
            weights.append([0.0, 0.0])
        elif abs(az) < 90:
            r = 1 - abs(az) / 90
            pos.append(r * front + (1 - r) * side)
            negs.append(torch.stack([front, side]))
            weights.append([-shifted_exponential_decay(*F_FS, r), -shifted_exponential_decay(*F_SF, 1 - r)])
        else:
            r = 2 - abs(az) / 90
            pos.append(r * side + (1 - r) * back)
            negs.append(torch.stack([side, front]))
            weights.append([-shifted_exponential_decay(*F_SB, r), -shifted_exponential_decay(*F_FSB, r)])
    return torch.stack(pos), PerpNeg(
        torch.stack(negs), torch.tensor(weights, dtype=torch.float32, device=side.device)
    )


def perpendicular_component(x: Tensor, y: Tensor) -> Tensor:
    """x − (⟨x, y⟩ / ‖y‖²)·y per sample, for (B, ...) tensors."""
    b = x.shape[0]
    dot = (x.reshape(b, -1) * y.reshape(b, -1)).sum(1)
    norm2 = y.reshape(b, -1).pow(2).sum(1).clamp_min(1e-12)
    return x - (dot / norm2).view(b, *([1] * (x.dim() - 1))) * y


def perp_neg_term(eps_cond: Tensor, eps_ref: Tensor, eps_negs: list[Tensor], weights: Tensor) -> Tensor:
    """Σ_i w_i · perp(ε(neg_i) − ε_ref, ε(y) − ε_ref): (B, C, h, w), before w(t) and the Perp-Neg scale.

    Args:
        eps_cond: ε(y) (B, C, h, w); eps_ref: ε of the negative prompt (or ∅ when there is none).
        eps_negs: the two view negatives' ε.
        weights: (B, 2).
    """
    pos = eps_cond - eps_ref
    out = torch.zeros_like(eps_cond)
    for i, e in enumerate(eps_negs):
        w = weights[:, i].view(-1, *([1] * (e.dim() - 1))).to(e.dtype)
        out = out + w * perpendicular_component(e - eps_ref, pos)
    return out
