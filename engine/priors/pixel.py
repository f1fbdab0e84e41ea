"""Pixel-space prior: DeepFloyd IF stage I and the bundled toy prior, through the same code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Prior
from .text import PromptEncoder


class PixelPrior(Prior):
    """Pixel diffusion prior (threestudio `deep-floyd-simple-guidance`, csd_reference.md §1a).

    Renders in [0, 1] map to [−1, 1] and are resized bilinearly (antialias off, differentiable) to the UNet's
    `sample_size` (64 for IF-I, 32 for the toy prior). IF's UNet predicts 6 channels (ε and the learned variance);
    only the first `channels` (= ε) are kept.

    Args:
        name: model id or folder.
        family: "if" or "toy".
        unet, scheduler: the diffusers components.
        text: the prompt encoder (T5 with attention mask for IF, CLIP-style for the toy prior).
        device, dtype: placement and weight dtype.
    """

    latent = False

    def __init__(
        self,
        *,
        name: str,
        family: str,
        unet: Any,
        scheduler: Any,
        text: PromptEncoder,
        device: torch.device,
        dtype: torch.dtype,
    ):
        super().__init__(
            name=name, unet=unet, scheduler=scheduler, text=text, device=device, dtype=dtype,
            resolution=unet.config.sample_size,
            channels=unet.config.in_channels,
        )
        self.family = family

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, 3, R, R) in [−1, 1], differentiable.

        Args:
            rgb: the render.
            generator: unused (pixel space is deterministic).
        """
        x = self.signed_image(rgb)
        return x.float()

    def decode(self, x: Tensor) -> Tensor:
        """(B, 3, R, R) in [−1, 1] → RGB in [0, 1]."""
        return ((x.detach().float() + 1.0) / 2.0).clamp(0, 1)

    @torch.no_grad()
    def predict_noise(
        self, x_t: Tensor, t: Tensor, embeddings: Tensor, control: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """ε (N, 3, R, R) float32 from ONE UNet call.

        Args:
            x_t: (N, 3, R, R) noisy images, all guidance branches stacked.
            t: (N,) timesteps.
            embeddings: (N, L, D) text embeddings.
            control: ignored (pixel priors have no ControlNets; `load_prior` refuses to attach them).
        """
        self._check_inputs(x_t, t, embeddings)
        out = self.unet(
            x_t.to(self.device, self.dtype),
            t.to(self.device),
            encoder_hidden_states=embeddings.to(self.device, self.dtype),
        ).sample
        out = out[:, : self.channels].float()
        return self.to_epsilon(out, x_t.to(out.device).float(), t)
