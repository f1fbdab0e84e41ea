"""Benchmark of text to mesh on the CPU with the toy prior: steps/s and seconds per stage, samples per ray
before and after occupancy culling, and the share of a step spent in the prior.

    python bench/generate.py [--steps-coarse 60] [--steps-refine 30] [--quality fast] [--prompt "a red cube"]
    python bench/generate.py --cuda [--cuda-steps 20]      # on a CUDA machine: real-size architectures
    python bench/generate.py --iou [--prior exact|toy|FOLDER] [--guidance csd,sds] [--shapes cube,sphere,cone,torus]
                             [--quality fast] [--seeds 0]     # does the mesh have the prompted shape?

`--iou`: `generate` for each shape and guidance (CSD as the task runs it, or SDS at equal steps: the same
preset's timesteps, weighting and normalisation with classifier-free scale `--sds-scale`, swapped in for the
task's CSD preset), then the 8-view silhouette IoU of each mesh with every reference shape
(`engine.testing.exact_prior.shape_ious`), steps/s per stage and an IoU table (rows shape × guidance; "own" is the
IoU with the prompted shape, "next" the best other one). `--prior exact` is the exact prior of
`engine.testing.exact_prior` (prompts "a {shape}"); any other prior gets "a {colour} {shape}" prompts.

Prints tables; asserts nothing. The generate demo (`python -m engine generate-demo`, quality "fast") runs the
preset's full step counts; its wall time is the last row when `--demo` is given.

CUDA (`--cuda`): the IF-I-XL (bench/guidance.py's reconstruction) and SD 2.1-base architectures built from
their configs with random fp16 weights and random text embeddings (no hub): stage 1 at 64² batch 4 with
Perp-Neg (5B UNet batch), 512 samples per ray, stage 2 on a 128 tet grid at 512² batch 1 with csd-sd-refine;
steps/s, peak memory and a step's cost ÷ the batched UNet forward alone (target ≤ 1.5). `--tiny-arch` runs the
same code with tiny widths (checks the script on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import torch

from csd_blender.protocol.params import GenerateParams
from engine.tasks.generate import make_generate_job, run_generate


def _row(cells) -> str:
    return " | ".join(f"{c:>12}" if not isinstance(c, str) else f"{c:<12}" for c in cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-coarse", type=int, default=60)
    ap.add_argument("--steps-refine", type=int, default=30)
    ap.add_argument("--quality", default="fast")
    ap.add_argument("--prompt", default="a red cube")
    ap.add_argument("--demo", action="store_true", help="also time the generate demo's full preset run")
    ap.add_argument("--cuda", action="store_true", help="real-size IF-I-XL / SD 2.1 architectures on CUDA")
    ap.add_argument("--cuda-steps", type=int, default=20)
    ap.add_argument(
        "--tiny-arch", action="store_true", help="with --cuda: tiny widths, any device (script check)"
    )
    ap.add_argument("--iou", action="store_true", help="shape IoU table (exact prior by default)")
    ap.add_argument("--prior", default="exact", help="with --iou: exact, toy or a local prior folder")
    ap.add_argument("--guidance", default="csd,sds", help="with --iou: csd, sds or both")
    ap.add_argument("--shapes", default="cube,sphere,cone,torus")
    ap.add_argument("--seeds", default="0", help="with --iou: comma-separated seeds")
    ap.add_argument("--sds-scale", type=float, default=21.0, help="SDS classifier-free scale (diffusers convention)")
    args = ap.parse_args()
    if args.cuda:
        cuda_bench(args.cuda_steps, args.tiny_arch)
        return
    if args.iou:
        from generate_iou import iou_bench  # bench/generate_iou.py

        iou_bench(args.prior, args.guidance.split(","), args.shapes.split(","), args.quality,
                  [int(s) for s in args.seeds.split(",")], args.sds_scale)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, toy prior")
    runs = [("short", dict(steps_coarse=args.steps_coarse, steps_refine=args.steps_refine))]
    if args.demo:
        runs.append(("demo preset", {}))
    print(_row(["run", "stage", "steps", "seconds", "steps/s", "prior share", "samples/ray"]))
    for name, over in runs:
        params = GenerateParams(prompt=args.prompt, quality=args.quality, device="cpu", **over)
        t0 = time.perf_counter()
        result = run_generate(make_generate_job(params, {}))
        wall = time.perf_counter() - t0
        st = result.stats
        c, r = st["coarse_seconds"], st["refine_seconds"]
        sec = st["seconds_per_stage"]
        before, after = st["samples_per_ray"]
        print(
            _row(
                [
                    name,
                    "coarse",
                    st["steps_coarse"],
                    f"{sec['coarse']:.1f}",
                    f"{st['steps_coarse'] / max(sec['coarse'], 1e-9):.2f}",
                    f"{c['prior'] / max(sum(c.values()), 1e-9):.0%}",
                    f"{before:.0f} → {after:.1f}",
                ]
            )
        )
        print(
            _row(
                [
                    name,
                    "refine",
                    st["steps_refine"],
                    f"{sec['refine']:.1f}",
                    f"{st['steps_refine'] / max(sec['refine'], 1e-9):.2f}",
                    f"{r.get('prior', 0) / max(sum(r.values()), 1e-9):.0%}" if r else "-",
                    "-",
                ]
            )
        )
        print(_row([name, "bake", "-", f"{sec['bake']:.1f}", "-", "-", "-"]))
        print(_row([name, "total", "-", f"{wall:.1f}", "-", "-", f"faces {st['faces']}"]))
        print(f"  coarse parts (s): {c}\n  refine parts (s): {r}")


SD21_BASE_UNET = dict(  # stabilityai/stable-diffusion-2-1-base unet/config.json (render_perf.md §0.5)
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)


def _shrink(cfg: dict, blocks: tuple) -> dict:
    small = dict(cfg, block_out_channels=blocks, layers_per_block=1)
    for key in ("attention_head_dim",):
        if isinstance(cfg.get(key), tuple):
            small[key] = (2,) * len(blocks)
        elif key in cfg:
            small[key] = 8
    if "cross_attention_dim" in cfg:
        small["cross_attention_dim"] = 32 if cfg.get("encoder_hid_dim") is None else 64
    if "encoder_hid_dim" in cfg:
        small["encoder_hid_dim"] = 64
    if "addition_embed_type_num_heads" in cfg:
        small["addition_embed_type_num_heads"] = 2
    small["norm_num_groups"] = 8
    return small


def _timed(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def cuda_bench(steps: int, tiny: bool) -> list[dict]:
    """Stage 1 (IF-I-XL arch, Perp-Neg) and stage 2 (SD 2.1-base arch) at official sizes; prints a table.

    Args:
        steps: timed steps per stage.
        tiny: tiny widths on any device (checks the script on a CPU).

    Returns:
        one dict per stage: stage, steps_per_s, ms_per_step, peak_gib, ratio (step ÷ UNet forward alone),
        unet_ms, samples_per_ray, parts (device-synchronised seconds per step by part).
    """
    sys.path.insert(0, str(REPO / "bench"))
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from guidance import IF_I_XL_UNET, SD15_VAE

    from engine.fields.density_field import DensityFieldConfig
    from engine.guidance import PromptEmbeddings, build_guidance
    from engine.guidance.view_prompts import ViewPrompts
    from engine.guidance.views import VIEWS
    from engine.priors.pixel import PixelPrior
    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.testing.tiny_models import sd_ddim_scheduler
    from engine.tasks.generate_coarse import CoarseConfig, run_coarse
    from engine.tasks.generate_refine import RefineConfig, run_refine

    cuda = torch.cuda.is_available() and not tiny
    dev = torch.device("cuda" if cuda else "cpu")
    dt = torch.float16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # tiny: 32² renders for stage 1 (the script check must stay seconds long on a CPU)
    if_cfg = IF_I_XL_UNET if not tiny else dict(_shrink(IF_I_XL_UNET, (32, 64, 64, 64)), sample_size=32)
    sd_cfg = SD21_BASE_UNET if not tiny else _shrink(SD21_BASE_UNET, (32, 64, 64, 64))
    vae_cfg = (
        SD15_VAE
        if not tiny
        else dict(SD15_VAE, block_out_channels=(32, 32, 64, 64), norm_num_groups=8, layers_per_block=1)
    )
    print(
        f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu'}, dtype {dt}, "
        f"{'tiny widths' if tiny else 'real architectures, random weights'}"
    )
    rows = []
    emit, stop = (lambda e: None), (lambda: False)

    # ---- stage 1: IF-I-XL arch, 64², batch 4, Perp-Neg
    with torch.device(dev):  # random init on the device: seconds instead of a minute for 2.3 B parameters
        unet = UNet2DConditionModel(**if_cfg)
    prior = PixelPrior(
        name="if-i-xl-arch",
        family="if",
        unet=unet,
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
        text=None,
        device=dev,
        dtype=dt,
    )
    d_text = if_cfg["encoder_hid_dim"]
    emb = lambda: torch.randn(1, 77, d_text, device=dev)
    prompts = ViewPrompts.from_embeddings(PromptEmbeddings(cond=emb(), null=emb(), neg=emb()),
                                          {v: emb() for v in VIEWS})
    size, batch = prior.resolution, 4
    samples = 512 if not tiny else 32
    cfg = CoarseConfig(
        steps=steps,
        batch_size=batch,
        size=size,
        samples_per_ray=samples,
        toy=False,
        field=DensityFieldConfig(),
        ambient_only_frac=0.5,
        occupancy_every=16,
        profile=True,
    )
    g = build_guidance("csd-if", total_steps=10_000)  # the official schedule: ω2 < 1 early, 5B batch
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    gen, ngen = torch.Generator().manual_seed(0), torch.Generator(device=dev).manual_seed(1)
    run_coarse(
        dataclasses_replace(cfg, steps=1 if tiny else 2),
        prior,
        g,
        prompts,
        prompts,
        gen,
        ngen,
        0,
        emit,
        stop,
        0.0,
        10**9,
        64,
    )  # warm-up (kernels, allocator)
    out = {}
    t = _timed(
        lambda: out.update(
            res=run_coarse(cfg, prior, g, prompts, prompts, gen, ngen, 0, emit, stop, 0.0, 10**9, 64)
        ),
        sync,
    )
    res = out["res"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    x = torch.rand(batch, 3, size, size, device=dev)
    x_t = prior.to_model_space(x)
    e = torch.cat([prompts.base.cond.expand(batch, -1, -1)] * 5)
    with torch.no_grad():
        prior.predict_noise(x_t.repeat(5, 1, 1, 1), torch.full((5 * batch,), 500, device=dev), e)
        unet_s = _timed(
            lambda: prior.predict_noise(x_t.repeat(5, 1, 1, 1), torch.full((5 * batch,), 500, device=dev), e),
            sync,
        )
    step_s = t / steps
    parts = {k: round(v / steps, 4) for k, v in res.seconds.items()}
    rows.append(
        {
            "stage": "coarse (IF-I-XL arch, 64², B 4, 5B UNet)",
            "steps_per_s": steps / t,
            "ms_per_step": 1000 * step_s,
            "peak_gib": peak,
            "ratio": step_s / unet_s,
            "unet_ms": 1000 * unet_s,
            "samples_per_ray": f"{res.samples_per_ray[0]:.0f} → {res.samples_per_ray[1]:.1f}",
            "parts": parts,
        }
    )
    print(f"coarse parts, s/step (device-synchronised): {parts}; UNet alone {unet_s:.4f} s")
    prior = unet = None  # free the IF weights before the SD ones
    if cuda:
        torch.cuda.empty_cache()

    # ---- stage 2: SD 2.1-base arch, 512², batch 1, tet grid 128
    with torch.device(dev):
        unet, vae = UNet2DConditionModel(**sd_cfg), AutoencoderKL(**vae_cfg)
    sd = StableDiffusionPrior(
        name="sd21-base-arch",
        unet=unet,
        vae=vae,
        scheduler=sd_ddim_scheduler(),
        text=None,
        device=dev,
        dtype=dt,
    )
    d_text = sd_cfg["cross_attention_dim"]
    sd_prompts = ViewPrompts.from_embeddings(
        PromptEmbeddings(cond=torch.randn(1, 77, d_text, device=dev), null=torch.randn(1, 77, d_text, device=dev),
                         neg=torch.randn(1, 77, d_text, device=dev)),
        {v: torch.randn(1, 77, d_text, device=dev) for v in VIEWS},
    )
    rsize = 512 if not tiny else 64
    rcfg = RefineConfig(
        steps=steps,
        batch_size=1,
        size=rsize,
        tet_resolution=128 if not tiny else 24,
        isosurface_threshold=2.0,
        toy=False,
        profile=True,
    )
    g2 = build_guidance("csd-sd-refine", total_steps=10_000)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = _timed(
        lambda: out.update(
            ref=run_refine(
                rcfg,
                res.field,
                sd,
                g2,
                sd_prompts,
                sd_prompts,
                gen,
                ngen,
                emit,
                stop,
                0.0,
                10**9,
                64,
            )
        ),
        sync,
    )
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    z = sd.to_model_space(torch.rand(1, 3, rsize, rsize, device=dev))
    e = torch.cat([sd_prompts.base.cond] * 3)
    with torch.no_grad():
        sd.predict_noise(z.repeat(3, 1, 1, 1), torch.full((3,), 300, device=dev), e)
        unet_s = _timed(
            lambda: sd.predict_noise(z.repeat(3, 1, 1, 1), torch.full((3,), 300, device=dev), e), sync
        )
    parts = {k: round(v / steps, 4) for k, v in out["ref"].seconds.items()}
    rows.append(
        {
            "stage": "refine (SD 2.1-base arch, 512², B 1, 3B UNet)",
            "steps_per_s": steps / t,
            "ms_per_step": 1000 * t / steps,
            "peak_gib": peak,
            "ratio": (t / steps) / unet_s,
            "unet_ms": 1000 * unet_s,
            "samples_per_ray": "-",
            "parts": parts,
        }
    )
    print(
        f"refine parts, s/step (device-synchronised): {parts}; UNet alone {unet_s:.4f} s; "
        f"mesh {len(out['ref'].faces)} faces"
    )
    print(_row(["stage", "steps/s", "peak GiB", "step ÷ UNet", "samples/ray"]))
    for r in rows:
        print(
            f"{r['stage']:<48} | {r['steps_per_s']:8.2f} | {r['peak_gib']:8.2f} | {r['ratio']:8.2f} | "
            f"{r['samples_per_ray']}"
        )
    return rows


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


if __name__ == "__main__":
    main()
