"""The Prior interface (DESIGN §4.1): one noise-prediction model behind encode/to_model_space/predict_noise."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import EngineError, ErrorCode
from .text import PromptEncoder

logger = logging.getLogger(__name__)


def prepare_unet(unet: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Frozen, eval-mode UNet/ControlNet on `device` in `dtype`; channels-last and SDPA processors on CUDA.

    Args:
        unet: a diffusers model with attention processors.
        device: target device.
        dtype: weight dtype.
    """
    if any(p.dtype != dtype for p in unet.parameters()):
        unet = unet.to(dtype=dtype)
    unet = unet.to(device=device).eval().requires_grad_(False)
    if device.type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    ensure_sdpa(unet)
    return unet


def ensure_sdpa(model: Any) -> int:
    """Replace plain attention processors by their torch-2 SDPA versions; returns how many were replaced.

    Args:
        model: a diffusers model exposing `attn_processors` / `set_attn_processor`.
    """
    if not hasattr(model, "attn_processors"):
        return 0
    from diffusers.models.attention_processor import (
        AttnAddedKVProcessor,
        AttnAddedKVProcessor2_0,
        AttnProcessor,
        AttnProcessor2_0,
    )

    procs = dict(model.attn_processors)
    changed = 0
    for name, proc in procs.items():
        if type(proc) is AttnProcessor:
            procs[name] = AttnProcessor2_0()
            changed += 1
        elif type(proc) is AttnAddedKVProcessor:
            procs[name] = AttnAddedKVProcessor2_0()
            changed += 1
    if changed:
        model.set_attn_processor(procs)
    return changed


class Prior:
    """A frozen text-to-image diffusion model seen as a noise predictor.

    Attributes:
        name: model id or folder.
        family: "sd" (latent Stable Diffusion), "if" (pixel, DeepFloyd IF style) or "toy" (the bundled prior).
        resolution: square render size (pixels) the model wants.
        channels: channels of the model space (4 latent, 3 pixel).
        latent: True when `to_model_space` encodes with a VAE.
        alphas_cumprod: (T,) float32 ᾱ on the device.
        num_train_timesteps: T.
        prediction_type: "epsilon", "v_prediction" or "sample" (outputs are always converted to ε).
        controlnets: the control conditions the prior consumes, e.g. ("depth", "canny").
        device, dtype: where the weights live and their dtype (inputs are cast, outputs returned as float32).
    """

    family: str = ""
    latent: bool = False
    controlnets: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        name: str,
        unet: Any,
        scheduler: Any,
        text: PromptEncoder,
        device: torch.device,
        dtype: torch.dtype,
        resolution: int,
        channels: int,
    ):
        self.name = name
        self.unet = prepare_unet(unet, device, dtype)
        self.scheduler = scheduler
        self.text = text
        self.device = device
        self.dtype = dtype
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().to(device=device, dtype=torch.float32)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise EngineError(
                ErrorCode.MODEL_MISSING,
                f"model {name!r}: unsupported prediction_type {self.prediction_type!r}",
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, family={self.family!r}, resolution={self.resolution}, "
            f"device={self.device}, dtype={self.dtype}, controlnets={self.controlnets})"
        )

    def knows_words(self, words: tuple[str, ...]) -> bool:
        """Whether prompts may use `words` (e.g. threestudio's view words): any text for real priors; for a prior
        with a word-level vocabulary (the toy prior), only the words it was trained on."""
        return self.text is None or self.text.knows(words)

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """(N, L, D) float32 embeddings, one per prompt; cached in memory and on disk per prompt.

        Args:
            prompts: prompt strings ("" is the null prompt).
        """
        return self.text.encode(prompts)

    def to_model_space(
        self, rgb: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:  # pragma: no cover
        """(B, 3, H, W) in [0, 1] → (B, C, h, w) model input, differentiable."""
        raise NotImplementedError

    def signed_image(self, rgb: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] → (B, 3, R, R) in [−1, 1] at the prior's resolution, differentiable."""
        x = rgb * 2.0 - 1.0
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return x

    def decode(self, x: Tensor) -> Tensor:  # pragma: no cover
        """(B, C, h, w) model space → (B, 3, H, W) RGB in [0, 1] (previews only; never called implicitly)."""
        raise NotImplementedError

    def _alpha(self, t: Tensor, ndim: int) -> Tensor:
        return self.alphas_cumprod[t.to(self.alphas_cumprod.device)].view(-1, *([1] * (ndim - 1)))

    def add_noise(self, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·ε (the DDPM forward process, = scheduler.add_noise).

        Args:
            x: (N, C, h, w) clean model-space input.
            noise: ε, same shape.
            t: (N,) integer timesteps.
        """
        a = self._alpha(t, x.dim()).to(x.device)
        return a.sqrt() * x + (1.0 - a).sqrt() * noise

    def to_epsilon(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Convert a model output to ε: v-prediction ε = sqrt(ᾱ)·v + sqrt(1 − ᾱ)·x_t; sample ε = (x_t − sqrt(ᾱ)x̂₀)/sqrt(1 − ᾱ).

        Args:
            out: (N, C, h, w) model output (float32).
            x_t: the noisy input.
            t: (N,) timesteps.
        """
        if self.prediction_type == "epsilon":
            return out
        a = self._alpha(t, out.dim()).to(out.device)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * out + (1.0 - a).sqrt() * x_t
        return (x_t - a.sqrt() * out) / (1.0 - a).sqrt()

    def _check_inputs(self, x_t: Tensor, t: Tensor, embeddings: Tensor) -> None:
        n = x_t.shape[0]
        if x_t.dim() != 4 or x_t.shape[1] != self.channels:
            raise EngineError(
                ErrorCode.INTERNAL, f"x_t must be (N, {self.channels}, h, w), got {tuple(x_t.shape)}"
            )
        if t.shape != (n,) or embeddings.shape[0] != n:
            raise EngineError(
                ErrorCode.INTERNAL,
                f"batch mismatch: x_t {n}, t {tuple(t.shape)}, embeddings {tuple(embeddings.shape)}",
            )

    def predict_noise(
        self, x_t: Tensor, t: Tensor, embeddings: Tensor, control: Mapping[str, Tensor] | None = None
    ) -> Tensor:  # pragma: no cover
        """ε prediction (N, C, h, w) float32 from ONE batched UNet call (all branches stacked in N)."""
        raise NotImplementedError
