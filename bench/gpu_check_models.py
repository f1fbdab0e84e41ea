"""The GPU check's models: SD 1.5 (+ depth ControlNet), SD 2.1-base and IF-I-XL stage I built from the published
configs (or tiny widths of the same block layout in the dry run) with random weights on the device, random text
embeddings, a TAESD-architecture encoder, and Spot as texture-job arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gpu_check_plan import CheckPlan

REPO = Path(__file__).resolve().parents[1]


def fake_text(prior, dim: int, length: int = 77, seed: int = 0) -> None:
    """Give `prior` random, per-prompt cached text embeddings of shape (1, length, dim) (no text encoder weights).

    Args:
        prior: the prior (its `encode_prompts` is replaced).
        dim: embedding width (768 SD 1.5, 1024 SD 2.x, 4096 T5-XXL for IF).
        length: tokens.
        seed: seed of the first prompt's embedding.
    """
    cache: dict[str, torch.Tensor] = {}

    def encode(prompts: list[str]) -> torch.Tensor:
        for p in prompts:
            if p not in cache:
                g = torch.Generator().manual_seed(seed + len(cache))
                cache[p] = torch.randn(1, length, dim, generator=g).to(prior.device)
        return torch.cat([cache[p] for p in prompts])

    prior.encode_prompts = encode


def configs(plan: CheckPlan) -> dict[str, dict]:
    """UNet/VAE configs: the published architectures, or tiny widths of the same block layout in the dry run."""
    from generate import SD21_BASE_UNET, _shrink  # bench/generate.py
    from guidance import IF_I_XL_UNET, SD15_UNET, SD15_VAE  # bench/guidance.py

    if not plan.dry_run:
        return {"sd15": SD15_UNET, "sd21": SD21_BASE_UNET, "if": IF_I_XL_UNET, "vae": SD15_VAE}
    blocks = (32, 64, 64, 64)
    size = plan.render // 8
    return {
        "sd15": dict(_shrink(SD15_UNET, blocks), sample_size=size),
        "sd21": dict(_shrink(SD21_BASE_UNET, blocks), sample_size=size),
        "if": dict(_shrink(IF_I_XL_UNET, blocks), sample_size=plan.render // 2),
        "vae": dict(SD15_VAE, block_out_channels=(32, 32, 64, 64), norm_num_groups=8, layers_per_block=1),
    }


def billions(module) -> str:
    """Parameters as "0.86 B" (or "1.2 M" below 10 M)."""
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e9:.2f} B" if n >= 1e7 else f"{n / 1e6:.1f} M"


def build_sd(
    plan: CheckPlan, unet_cfg: dict, vae_cfg: dict, controlnet: bool, prediction_type: str, name: str
):
    """A StableDiffusionPrior with random weights built directly on the device (optionally + a depth ControlNet).

    Args:
        plan: device and dtype.
        unet_cfg, vae_cfg: diffusers configs.
        controlnet: add a depth ControlNet initialised from the UNet (ControlNetModel.from_unet).
        prediction_type: the scheduler's "epsilon" or "v_prediction".
        name: the prior's name.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from engine.priors.base import prepare_unet
    from engine.priors.controlnet import ControlNetStack
    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.testing.tiny_models import sd_ddim_scheduler

    with torch.device(plan.device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        net = ControlNetModel.from_unet(unet) if controlnet else None
    sizes = (
        f"UNet {billions(unet)}"
        + (f" + CN {billions(net)}" if net is not None else "")
        + f" + VAE {billions(vae)}"
    )
    stack = None
    if net is not None:
        res = unet_cfg["sample_size"] * 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        stack = ControlNetStack({"depth": prepare_unet(net, plan.device, plan.dtype)}, {"depth": 1.0}, res)
    prior = StableDiffusionPrior(
        name=name,
        unet=unet,
        vae=vae,
        controlnet=stack,
        text=None,
        device=plan.device,
        dtype=plan.dtype,
        scheduler=sd_ddim_scheduler(prediction_type),
    )
    fake_text(prior, unet_cfg["cross_attention_dim"])
    prior.sizes = sizes
    return prior


def build_if(plan: CheckPlan, unet_cfg: dict):
    """IF-I-XL stage I (pixel prior) with random weights and T5-XXL-shaped random text embeddings."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from engine.priors.pixel import PixelPrior

    with torch.device(plan.device):
        unet = UNet2DConditionModel(**unet_cfg)
    sizes = f"UNet {billions(unet)}"
    prior = PixelPrior(
        name="if-i-xl-arch",
        family="if",
        unet=unet,
        text=None,
        device=plan.device,
        dtype=plan.dtype,
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
    )
    fake_text(prior, unet_cfg["encoder_hid_dim"])
    prior.sizes = sizes
    return prior


def spot() -> dict:
    """Spot (5.9k faces, with UVs) as texture-job arrays."""
    from engine.mesh import load_mesh, load_texture_image

    m = load_mesh(REPO / "engine" / "assets" / "meshes" / "spot.obj", up="y")
    tex = load_texture_image(REPO / "engine" / "assets" / "meshes" / "spot_texture.png")
    return {"vertices": m.vertices, "faces": m.faces.astype(np.int32), "uvs": m.uvs, "texture": tex}


def tiny_encoder(plan: CheckPlan):
    """A random-weight AutoencoderTiny: the TAESD architecture (diffusers' defaults), tiny widths in the dry run."""
    from diffusers import AutoencoderTiny

    kw = {}
    if plan.dry_run:
        kw = {
            "encoder_block_out_channels": (8,) * 4,
            "decoder_block_out_channels": (8,) * 4,
            "num_encoder_blocks": (1,) * 4,
            "num_decoder_blocks": (1,) * 4,
        }
    with torch.device(plan.device):
        return AutoencoderTiny(**kw)
