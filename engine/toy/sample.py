"""Sampling the toy prior with plain diffusers components (DDIM + classifier-free guidance), loaded with stock
`from_pretrained` (engine.toy.model.load_networks): the loop a diffusers user would write."""
from __future__ import annotations

from pathlib import Path

import torch

from .model import load_networks


@torch.no_grad()
def ddim_sample(folder: str | Path, prompt: str, n: int, steps: int = 50, guidance_scale: float = 4.0,
                seed: int = 0) -> torch.Tensor:
    """`n` samples for `prompt` from a diffusers-layout pixel prior.

    Args:
        folder: the model folder (unet/, text_encoder/, tokenizer/, scheduler/).
        prompt: the text prompt.
        n: number of samples.
        steps: DDIM steps.
        guidance_scale: classifier-free guidance scale (diffusers convention).
        seed: seeds the initial noise.
    Returns:
        (n, H, W, 3) float32 images in [0, 1], top row first.
    """
    from diffusers import DDIMScheduler
    from transformers import AutoTokenizer

    folder = Path(folder)
    unet, text_encoder = (net.eval() for net in load_networks(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    ids = tokenizer([prompt, ""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    cond, uncond = text_encoder(ids).last_hidden_state.chunk(2)
    emb = torch.cat([cond.expand(n, -1, -1), uncond.expand(n, -1, -1)])
    size = unet.config.sample_size
    x = torch.randn(n, unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        eps_c, eps_u = unet(torch.cat([x, x]), t, emb).sample.chunk(2)
        x = scheduler.step(eps_u + guidance_scale * (eps_c - eps_u), t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous()
