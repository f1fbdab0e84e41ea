"""Stable Diffusion 1.5 / 2.x as a latent prior: VAE encode with gradient, ε/v prediction, optional ControlNets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Prior, prepare_unet
from .controlnet import ControlNetStack
from .text import PromptEncoder


class StableDiffusionPrior(Prior):
    """Latent diffusion prior (threestudio `stable-diffusion-triple-guidance`, csd_reference.md §1b/§2c).

    The render is resized bilinearly to the UNet's pixel size (512 for SD 1.5 / 2.1-base, 768 for 2.1), encoded by
    the VAE with gradient, and scaled by `vae.config.scaling_factor`: (B, 3, H, W) → (B, 4, R/8, R/8).

    Args:
        name: model id or folder.
        unet, vae, scheduler: the diffusers components.
        text: the prompt encoder.
        device, dtype: placement and weight dtype.
        controlnet: optional ControlNet stack (SD 1.5).
        latent_mode: "sample" (posterior sample, the official code) or "mean".
        encoder: optional fast approximate encoder for `to_model_space` (diffusers AutoencoderTiny, e.g.
            madebyollin/taesd for SD 1.x/2.x): a much cheaper encode with gradient at lower fidelity (its latents
            approximate the VAE's posterior mean, so the guidance sees a slightly different image); `decode`
            keeps the full VAE.
    """

    family = "sd"
    latent = True

    def __init__(
        self,
        *,
        name: str,
        unet: Any,
        vae: Any,
        scheduler: Any,
        text: PromptEncoder,
        device: torch.device,
        dtype: torch.dtype,
        controlnet: ControlNetStack | None = None,
        latent_mode: str = "sample",
        encoder: Any | None = None,
    ):
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        super().__init__(
            name=name, unet=unet, scheduler=scheduler, text=text, device=device, dtype=dtype,
            resolution=unet.config.sample_size * self.vae_scale_factor,
            channels=unet.config.in_channels,
        )
        self.vae = prepare_unet(vae, device, dtype)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.get("shift_factor", None) or 0.0)
        self.controlnet = controlnet
        self.controlnets = controlnet.names if controlnet is not None else ()
        if latent_mode not in ("sample", "mean"):
            raise ValueError(f"latent_mode must be 'sample' or 'mean', got {latent_mode!r}")
        self.latent_mode = latent_mode
        self.encoder = None
        if encoder is not None:
            if encoder.config.latent_channels != self.channels:
                raise ValueError(
                    f"encoder makes {encoder.config.latent_channels}-channel latents, "
                    f"the UNet takes {self.channels}"
                )
            self.encoder = prepare_unet(encoder, device, dtype)

    @property
    def controlnet_scales(self) -> dict[str, float]:
        """Condition name → scale (mutable: tasks may anneal it between steps)."""
        return self.controlnet.scales if self.controlnet is not None else {}

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] → (B, 4, R/8, R/8) float32 latents, differentiable through the encoder.

        The VAE's encoder, or the tiny `encoder` when one is set.

        Args:
            rgb: the render.
            generator: for the posterior sample.
        """
        x = self.signed_image(rgb)
        if self.encoder is not None:  # AutoencoderTiny: latents already in the UNet's (scaled) space
            z = self.encoder.encode(x.to(self.dtype)).latents
            return (z * self.encoder.config.scaling_factor).float()
        dist = self.vae.encode(x.to(self.dtype)).latent_dist
        z = dist.sample(generator=generator) if self.latent_mode == "sample" else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        """(B, 4, h, w) latents → (B, 3, R, R) RGB in [0, 1] (previews only)."""
        img = self.vae.decode((x / self.scaling_factor + self.shift_factor).to(self.dtype)).sample
        return ((img.float() + 1.0) / 2.0).clamp(0, 1)

    @torch.no_grad()
    def predict_noise(
        self, x_t: Tensor, t: Tensor, embeddings: Tensor, control: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """ε (N, 4, h, w) float32 from ONE UNet call (plus one call per ControlNet, same batch N).

        Args:
            x_t: (N, 4, h, w) noisy latents, all guidance branches stacked.
            t: (N,) timesteps.
            embeddings: (N, L, D) text embeddings.
            control: condition name → (N | 1 | divisor of N, 3, H, W) images in [0, 1]; "canny" may be
                derived from "normal". Ignored when no ControlNet is loaded.
        """
        self._check_inputs(x_t, t, embeddings)
        sample = x_t.to(self.device, self.dtype)
        emb = embeddings.to(self.device, self.dtype)
        t = t.to(self.device)
        extra = {}
        if self.controlnet is not None:
            images = self.controlnet.prepare(control, x_t.shape[0], self.device, self.dtype)
            down, mid = self.controlnet.residuals(sample, t, emb, images)
            if down is not None:
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        out = self.unet(sample, t, encoder_hidden_states=emb, **extra).sample.float()
        return self.to_epsilon(out, x_t.to(out.device).float(), t)
