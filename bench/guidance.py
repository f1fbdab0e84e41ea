"""Benchmark of the guidance loop (render stand-in → model space → CSD/SDS → backward → Adam): UNet calls and batch
per step, steps/s and, on CUDA, peak memory. Prints a table; asserts nothing.

    python bench/guidance.py [--steps 20] [--cpu-only]

CPU cases: the toy prior (engine/assets/toy_prior when present, else a randomly initialised folder of the same
architecture from engine.toy.model) and a tiny Stable Diffusion (engine.testing.tiny_models) with and without two ControlNets.
CUDA cases (only when CUDA is present): Stable Diffusion 1.5 and DeepFloyd IF-I-XL architectures with random fp16
weights, batch 1 and 4; configs are written out below with their provenance.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from engine.guidance import PromptEmbeddings, build_guidance
from engine.priors import load_prior
from engine.priors.hub import TOY_PRIOR_DIR

# Stable Diffusion 1.5 UNet / VAE: the values of runwayml/stable-diffusion-v1-5 unet/config.json and vae/config.json
# (also diffusers' convert_original_stable_diffusion_to_diffusers defaults for v1 checkpoints).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
)
# DeepFloyd IF-I-XL stage I: block types, text_proj from T5-XXL (4096), added-KV attention, scale-shift resnets,
# gelu and group-norm cross-attention norm follow diffusers scripts/convert_if.py; the widths (512·[1,2,3,4]),
# 3 layers per block and head dim 64 are a RECONSTRUCTION not checked against the hub config (this builds about
# 2.3 B parameters, the model card says 4.3 B), so the IF rows are a lower bound on cost.
IF_I_XL_UNET = dict(
    sample_size=64, in_channels=3, out_channels=6, layers_per_block=3,
    block_out_channels=(512, 1024, 1536, 2048), attention_head_dim=64, cross_attention_dim=2048,
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", encoder_hid_dim=4096, encoder_hid_dim_type="text_proj",
    addition_embed_type="text", addition_embed_type_num_heads=64, resnet_time_scale_shift="scale_shift",
    act_fn="gelu", cross_attention_norm="group_norm",
)


def run_case(label, prior, guidance, prompts, batch, steps, control=None, warmup=2):
    """Time `steps` optimisation steps; returns one table row (dict)."""
    device = prior.device
    gen = torch.Generator(device="cpu").manual_seed(0)
    img = torch.rand(batch, 3, prior.resolution, prior.resolution, generator=gen).to(device).requires_grad_()
    opt = torch.optim.Adam([img], lr=1e-2)
    if control is not None:
        control = {k: v.to(device) for k, v in control.items()}
    calls = batches = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        x = prior.to_model_space(img)
        out = guidance(prior, x, prompts, step=i, control=control, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if i >= warmup:
            calls += out.unet_calls
            batches += out.unet_batch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - start
    return {
        "case": label,
        "device": device.type,
        "dtype": str(prior.dtype).replace("torch.", ""),
        "B": batch,
        "calls/step": calls / steps,
        "UNet batch": batches / steps,
        "steps/s": steps / dt,
        "ms/step": 1000 * dt / steps,
        "peak MiB": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else float("nan"),
    }


def print_table(rows):
    cols = ["case", "device", "dtype", "B", "calls/step", "UNet batch", "steps/s", "ms/step", "peak MiB"]
    fmt = {
        "calls/step": "{:.0f}",
        "UNet batch": "{:.0f}",
        "steps/s": "{:.2f}",
        "ms/step": "{:.1f}",
        "peak MiB": "{:.0f}",
    }
    text = [[fmt.get(c, "{}").format(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in text:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(t, widths)) + " |")


def toy_folder(tmp: Path) -> tuple[str, str]:
    """The trained toy prior when present, else a random folder with the same architecture."""
    if (TOY_PRIOR_DIR / "model_index.json").is_file():
        return "toy", "toy prior (trained)"
    try:
        from engine.toy import model as toy

        tok = toy.build_tokenizer()
        toy.save_folder(
            tmp / "toy",
            toy.build_unet(),
            toy.build_text_encoder(len(tok)),
            tok,
            toy.build_scheduler(),
            {"note": "random weights for bench/guidance.py"},
        )
        return str(tmp / "toy"), "toy-size pixel prior (random)"
    except Exception:  # noqa: BLE001 - fall back to the tiny toy layout if the toy module changes
        from engine.testing.tiny_models import save_tiny_toy

        return str(save_tiny_toy(tmp / "toy")), "tiny toy-layout prior (random)"


def cpu_cases(steps: int, tmp: Path) -> list[dict]:
    from engine.testing.tiny_models import save_tiny_controlnet, save_tiny_sd

    rows = []
    model, label = toy_folder(tmp)
    prior = load_prior(model, cache_dir=tmp / "cache")
    words = prior.text.tokenizer.get_vocab()
    neg = "a red plain cube" if all(w in words for w in ("red", "plain", "cube")) else ""
    prompts = PromptEmbeddings.from_prompts(prior, "a blue striped sphere" if neg else "a blue sphere", neg)
    for b in (1, 4):
        rows.append(
            run_case(
                f"{label}: csd-toy, no neg",
                prior,
                build_guidance("csd-toy"),
                PromptEmbeddings(prompts.cond, prompts.null),
                b,
                steps,
            )
        )
        if neg:
            rows.append(
                run_case(
                    f"{label}: csd ω2=0.5, neg",
                    prior,
                    build_guidance("csd-toy", omega2=0.5),
                    prompts,
                    b,
                    steps,
                )
            )
        rows.append(
            run_case(
                f"{label}: sds",
                prior,
                build_guidance("sds-sd", guidance_scale=7.5),
                PromptEmbeddings(prompts.cond, prompts.null),
                b,
                steps,
            )
        )
    sd = save_tiny_sd(tmp / "sd")
    cns = (
        f"depth={save_tiny_controlnet(sd, tmp / 'cn1')}",
        f"canny={save_tiny_controlnet(sd, tmp / 'cn2', 2)}",
    )
    for controlnets in ((), cns):
        prior = load_prior(str(sd), controlnets=controlnets, cache_dir=tmp / "cache")
        prompts = PromptEmbeddings.from_prompts(prior, "a photo of a dog", "ugly noisy")
        control = (
            {"depth": torch.rand(1, 3, 16, 16), "normal": torch.rand(1, 3, 16, 16)} if controlnets else None
        )
        for b in (1, 4):
            rows.append(
                run_case(
                    f"tiny SD: csd-sd-refine{' + 2 ControlNets' if controlnets else ''}",
                    prior,
                    build_guidance("csd-sd-refine"),
                    prompts,
                    b,
                    steps,
                    control,
                )
            )
    return rows


def cuda_cases(steps: int) -> list[dict]:
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel

    from engine.priors.controlnet import ControlNetStack
    from engine.priors.pixel import PixelPrior
    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.testing.tiny_models import sd_ddim_scheduler

    dev, dt = torch.device("cuda"), torch.float16
    rows = []
    unet = UNet2DConditionModel(**SD15_UNET)
    vae = AutoencoderKL(**SD15_VAE)
    sched = sd_ddim_scheduler()
    emb = lambda d: torch.randn(1, 77, d, device=dev)  # noqa: E731 - random text embeddings (no text encoder)
    prompts = PromptEmbeddings(cond=emb(768), null=emb(768), neg=emb(768))
    for with_cn in (False, True):
        stack = None
        if with_cn:
            net = ControlNetModel.from_unet(unet).to(dev, dt).eval().requires_grad_(False)
            stack = ControlNetStack({"depth": net}, {"depth": 1.0}, 512)
        prior = StableDiffusionPrior(
            name="sd15-arch",
            unet=unet,
            vae=vae,
            scheduler=sched,
            text=None,
            device=dev,
            dtype=dt,
            controlnet=stack,
        )
        control = {"depth": torch.rand(1, 3, 512, 512)} if with_cn else None
        for b in (1, 4):
            rows.append(
                run_case(
                    f"SD 1.5 arch: csd-sd-refine{' + depth ControlNet' if with_cn else ''}",
                    prior,
                    build_guidance("csd-sd-refine"),
                    prompts,
                    b,
                    steps,
                    control,
                )
            )
        del prior, stack
        torch.cuda.empty_cache()
    del unet, vae
    torch.cuda.empty_cache()
    unet = UNet2DConditionModel(**IF_I_XL_UNET)
    n_params = sum(p.numel() for p in unet.parameters()) / 1e9
    prior = PixelPrior(
        name="if-i-xl-arch", family="if", unet=unet,
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"), text=None,
        device=dev, dtype=dt,
    )
    prompts = PromptEmbeddings(cond=emb(4096), null=emb(4096), neg=emb(4096))
    for b in (1, 4):
        rows.append(
            run_case(
                f"IF-I-XL arch ({n_params:.1f} B params): csd-if at ω2=0.5",
                prior,
                build_guidance("csd-if"),
                prompts,
                b,
                steps,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case (after 2 warm-up steps)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--skip-adherence", action="store_true", help="skip the toy prior's DDIM adherence figures")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load:.1f}, "
        f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = cpu_cases(args.steps, Path(tmp))
    if torch.cuda.is_available() and not args.cpu_only:
        rows += cuda_cases(args.steps)
    print_table(rows)
    import toy_prior  # bench/toy_prior.py: toy UNet forward (old vs new architecture) and sampling adherence

    toy_prior.main(["--skip-adherence"] if args.skip_adherence else [])


if __name__ == "__main__":
    main()
