"""Benchmark of the texture task: steps/s and seconds per stage, CSD vs SDS colour adherence, CUDA scale.

    python bench/texture.py [--steps 60] [--adherence-steps 200] [--cpu-only] [--skip-adherence] [--scaling]

Prints tables; asserts nothing. Cases:
1. CPU, the bundled toy prior and a tiny Stable Diffusion (engine.testing.tiny_models) on Spot: steps/s and the time
   per stage (render, to-model-space, UNet, backward, optimiser, bake) from the task's own stats.
2. CSD (csd-toy) vs SDS (diffusers scale 21 = threestudio IF's 20) at equal steps and seeds on a sphere with
   "a {colour} sphere": views (of 8) whose mean hue is in the colour family, and mean saturation.
3. CUDA only: full-size Stable Diffusion 1.5 + depth ControlNet architectures with random fp16 weights at 512²
   renders (random text embeddings stand in for CLIP): steps/s, peak memory, and step time ÷ UNet+ControlNet time.
4. `--scaling`: the toy prior's step time against mesh faces (tori, 1 k → 1 M), bake time against
   texture size (512 → 4096) and step time against batch size (1, 2, 4, 8) — `scaling_rows`, which
   bench/gpu_check.py runs with the SD 1.5 + depth ControlNet architecture on CUDA.
Baseline named in the ratio column: the UNet(+ControlNet) forward inside the same step (target ≤ 1.5).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "fixtures")]

from texture_stats import in_family, mean_hue, object_mask

from csd_blender.protocol.params import TextureParams
from engine.mesh import load_mesh
from engine.priors import load_prior
from engine.tasks.texture import make_texture_job, result_views, run_texture

STAGES = ("render", "to_model_space", "unet", "backward", "optimiser", "bake")


def _spot() -> dict:
    m = load_mesh(REPO / "engine" / "assets" / "meshes" / "spot.obj", up="y")
    return {"vertices": m.vertices, "faces": m.faces.astype(np.int32), "uvs": m.uvs}


def _sphere() -> dict:
    m = trimesh.creation.icosphere(subdivisions=3)
    return {"vertices": m.vertices.astype(np.float32), "faces": m.faces.astype(np.int32)}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({torch.get_num_threads()} threads)"


def torus(faces: int) -> dict:
    """Texture-job arrays of a torus grid with 4·r² ≈ `faces` triangles (r rings of 2r quads) and its own UVs.

    Args:
        faces: the wanted face count (1 000 → 1 024, 10 000 → 10 000, 100 000 → 99 856, 1 000 000 exactly).
    """
    r = max(2, round(math.sqrt(faces / 4)))
    c = 2 * r
    i, j = np.meshgrid(np.arange(c + 1), np.arange(r + 1), indexing="xy")       # (r+1, c+1) grid with seams
    u, v = i / c, j / r
    phi, theta = 2 * np.pi * u, 2 * np.pi * v
    rad = 1.0 + 0.4 * np.cos(theta)
    verts = np.stack([rad * np.cos(phi), rad * np.sin(phi), 0.4 * np.sin(theta)], -1).reshape(-1, 3)
    idx = np.arange((r + 1) * (c + 1)).reshape(r + 1, c + 1)
    a, b, cc, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    tri = np.concatenate([np.stack([a, b, cc], -1).reshape(-1, 3), np.stack([a, cc, d], -1).reshape(-1, 3)])
    uv = np.stack([u, v], -1).reshape(-1, 2)
    return {"vertices": verts.astype(np.float32), "faces": tri.astype(np.int32),
            "uvs": uv[tri].astype(np.float32)}


def scaling_rows(prior, *, faces=(1_000, 10_000, 100_000, 1_000_000), sizes=(512, 1024, 2048, 4096),
                 batches=(1, 2, 4, 8), steps: int = 5, base_batch: int | None = None,
                 render_size: int | None = None, device: str = "cpu") -> list[dict]:
    """How a texture job's cost grows: step time against faces, bake time against texture size, step time
    against batch.

    Args:
        prior: the prior (toy on the CPU, SD 1.5 + depth ControlNet in bench/gpu_check.py).
        faces: torus face counts for the faces axis (Spot's 5.9 k faces for the other two axes).
        sizes: texture (bake) sizes.
        batches: batch sizes.
        steps: steps per job (after a one-step warm-up job at each faces/batch point).
        base_batch: the batch of the faces and texture axes (default the smallest of `batches`).
        render_size: render size (None: the prior's).
        device: "cpu" or "cuda".

    Returns:
        rows with axis ("faces", "texture", "batch"), value, batch, ms_step (optimisation loop wall per step;
        NaN on the texture axis), render_ms (host clock), bake_s and peak_gib (NaN on the CPU).
    """
    base = base_batch or min(batches)
    cuda = device.startswith("cuda")

    def job(arrays: dict, batch: int, texture_size: int, n_steps: int) -> dict:
        p = TextureParams(prompt="a red sphere", steps=n_steps, batch_size=batch, texture_size=texture_size,
                          render_size=render_size, device=device, progress_every=n_steps, preview_size=64)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        st = run_texture(make_texture_job(p, arrays), prior=prior).stats
        return {"batch": batch, "ms_step": 1000 * st["loop_seconds"] / st["steps_run"],
                "render_ms": 1000 * st["seconds_per_stage"]["render"] / st["steps_run"],
                "bake_s": st["seconds_per_stage"]["bake"],
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")}

    rows, smallest = [], min(sizes)
    for n in faces:
        arrays = torus(n)
        job(arrays, base, smallest, 1)
        rows.append({"axis": "faces", "value": len(arrays["faces"]), **job(arrays, base, smallest, steps)})
    for size in sizes:  # one step each: only the bake depends on the texture size
        rows.append({"axis": "texture", "value": size, **job(_spot(), base, size, 1),
                     "ms_step": float("nan"), "render_ms": float("nan")})
    for b in batches:
        job(_spot(), b, smallest, 1)
        rows.append({"axis": "batch", "value": b, **job(_spot(), b, smallest, steps)})
    return rows


def print_scaling(rows: list[dict]) -> None:
    print("\n## Texture job scaling (faces: tori; texture and batch: Spot)\n")
    print("| axis | value | batch | ms/step | render ms | bake s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    def fmt(value: float, spec: str) -> str:
        return "—" if np.isnan(value) else format(value, spec)

    for r in rows:
        print(f"| {r['axis']} | {r['value']:,} | {r['batch']} | {fmt(r['ms_step'], '.1f')} | "
              f"{fmt(r['render_ms'], '.1f')} | {r['bake_s']:.2f} | {fmt(r['peak_gib'], '.2f')} |")


def speed_row(label: str, prior, arrays: dict, steps: int, **params) -> dict:
    p = TextureParams(prompt=params.pop("prompt", "a red striped sphere"), steps=steps, progress_every=steps,
                      **params)
    if torch.cuda.is_available() and str(prior.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = run_texture(make_texture_job(p, arrays), prior=prior)
    wall = time.perf_counter() - t0
    st = result.stats["seconds_per_stage"]
    loop = sum(st[k] for k in STAGES[:-1])
    peak = torch.cuda.max_memory_allocated() / 2**30 if str(prior.device).startswith("cuda") else float("nan")
    return {"case": label, "device": _device_name(str(prior.device)), "steps/s": steps / loop,
            **{k: st[k] / (steps if k != "bake" else 1) for k in STAGES}, "wall_s": wall, "peak_GiB": peak,
            "step/unet": loop / max(st["unet"], 1e-9)}


def print_speed(rows: list[dict]) -> None:
    print("\n## Texture task speed (per-step seconds by stage; bake once)\n")
    head = ["case", "device", "steps/s", *STAGES, "peak GiB", "step ÷ UNet"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["case"], r["device"], f"{r['steps/s']:.2f}", *(f"{r[k]:.4f}" for k in STAGES),
                 "—" if np.isnan(r["peak_GiB"]) else f"{r['peak_GiB']:.2f}", f"{r['step/unet']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def adherence(steps: int, seeds: tuple[int, ...]) -> None:
    prior = load_prior("toy", device="cpu")
    print(f"\n## CSD vs SDS on the toy prior: {steps} steps, sphere, seeds {list(seeds)}\n")
    print("| prompt | CSD views in family (of 8) | CSD mean saturation | SDS views in family | SDS mean saturation |")
    print("|---|---|---|---|---|")
    for colour in ("red", "green", "blue", "yellow"):
        cells = []
        for guidance, overrides in (("csd-toy", {}), ("sds-sd", {"guidance_scale": 21.0})):
            hits, sats = 0, []
            for seed in seeds:
                p = TextureParams(prompt=f"a {colour} sphere", steps=steps, seed=seed, texture_size=256,
                                  guidance=guidance, guidance_overrides=overrides, progress_every=steps)
                r = run_texture(make_texture_job(p, _sphere()), prior=prior)
                views = result_views(r, size=96)
                for v in views:
                    h, s = mean_hue(v, object_mask(v))
                    hits += in_family(h, s, colour)
                    sats.append(s)
            cells += [f"{hits}/{8 * len(seeds)}", f"{np.mean(sats):.2f}"]
        print(f"| a {colour} sphere | " + " | ".join(cells) + " |")


def cuda_rows(steps: int) -> list[dict]:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from engine.testing.tiny_models import sd_ddim_scheduler

    sys.path.insert(0, str(REPO / "bench"))
    from guidance import SD15_UNET, SD15_VAE  # the published SD 1.5 configs (see bench/guidance.py)

    from engine.priors.controlnet import ControlNetStack
    from engine.priors.stable_diffusion import StableDiffusionPrior

    dev, dt = torch.device("cuda"), torch.float16
    unet = UNet2DConditionModel(**SD15_UNET)
    net = ControlNetModel.from_unet(unet)
    prior = StableDiffusionPrior(
        name="sd15-arch+depth", unet=unet, vae=AutoencoderKL(**SD15_VAE),
        scheduler=sd_ddim_scheduler(),
        text=None, device=dev, dtype=dt,
        controlnet=ControlNetStack({"depth": net.to(dev, dt).eval().requires_grad_(False)}, {"depth": 1.0}, 512))
    prior.controlnets = ("depth",)
    prior.encode_prompts = lambda prompts: torch.randn(len(prompts), 77, 768, device=dev)  # no CLIP weights
    rows = []
    for batch in (1, 4):
        rows.append(speed_row(f"SD 1.5 + depth ControlNet arch, 512² render, batch {batch}", prior, _spot(), steps,
                              batch_size=batch, render_size=512, texture_size=1024, device="cuda"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--adherence-steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--skip-adherence", action="store_true")
    parser.add_argument("--scaling", action="store_true", help="also the faces / texture size / batch tables")
    parser.add_argument("--scaling-only", action="store_true", help="only the scaling tables")
    args = parser.parse_args()
    if args.scaling or args.scaling_only:
        rows = scaling_rows(load_prior("toy", device="cpu"), base_batch=4)
        print_scaling(rows)
        if args.scaling_only:
            return
    rows = []
    toy = load_prior("toy", device="cpu")
    rows.append(speed_row("toy prior, Spot, batch 4, 64² render", toy, _spot(), args.steps, texture_size=512))
    with tempfile.TemporaryDirectory() as tmp:
        from engine.testing.tiny_models import save_tiny_sd

        sd = load_prior(str(save_tiny_sd(Path(tmp) / "tiny_sd")), device="cpu")
        rows.append(speed_row("tiny SD (random), Spot, batch 1", sd, _spot(), args.steps, prompt="a red sphere",
                              texture_size=512, batch_size=1))
    if torch.cuda.is_available() and not args.cpu_only:
        rows += cuda_rows(args.steps)
    print_speed(rows)
    if not args.skip_adherence:
        adherence(args.adherence_steps, tuple(args.seeds))


if __name__ == "__main__":
    main()
