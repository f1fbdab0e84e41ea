"""Benchmark of the edit task (paper Eq. 11): stage seconds, the ω2 = 0 vs ω2 > 0 comparison, CUDA scale.

    python bench/edit.py [--steps 150] [--cpu-only | --cuda-only] [--skip-comparison]

Prints tables; asserts nothing. Cases:
1. CPU, the bundled toy prior: Spot with its own texture and the analytic red/white striped sphere: seconds of the
   reconstruction (fit) stage with the PSNR it reached, of the edit stage per step, and of the bake.
2. The striped sphere edited with target "a blue striped sphere" and edit "a red striped sphere", ω2 = 1 (Eq. 11)
   and ω2 = 0 (plain target-prompt CSD from the fitted texture), same seed and preservation: views (of 8) in the
   blue family and the binarised-luminance layout correlation with the original, side by side.
3. CUDA only: SD 1.5-architecture random fp16 weights at 512² renders (random text embeddings stand in for CLIP):
   edit steps/s and peak memory.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "fixtures"), str(REPO / "bench")]

from edit_stats import layout_correlation, striped_texture, uv_sphere, views_in_family

from csd_blender.protocol.params import EditParams
from engine.mesh import Mesh, load_mesh, load_texture_image
from engine.priors import load_prior
from engine.tasks.common.turntable import mesh_turntable
from engine.tasks.edit import make_edit_job, run_edit

LOOP = ("render", "to_model_space", "unet", "backward", "optimiser")


def _spot() -> dict:
    m = load_mesh(REPO / "engine" / "assets" / "meshes" / "spot.obj", up="y")
    texture = load_texture_image(REPO / "engine" / "assets" / "meshes" / "spot_texture.png")
    return {"vertices": m.vertices, "faces": m.faces.astype(np.int32), "uvs": m.uvs, "texture": texture}


def _striped() -> dict:
    v, f, uv = uv_sphere()
    return {"vertices": v, "faces": f, "uvs": uv, "texture": striped_texture(256)}


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"


def run(prior, arrays: dict, steps: int, **params):
    p = EditParams(target_prompt=params.pop("target", "a blue striped sphere"),
                   edit_prompt=params.pop("edit", "a red striped sphere"), steps=steps, progress_every=steps,
                   **params)
    if str(prior.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = run_edit(make_edit_job(p, arrays), prior=prior)
    return result, time.perf_counter() - t0


def speed_row(label: str, prior, arrays: dict, steps: int, **params) -> dict:
    result, wall = run(prior, arrays, steps, **params)
    st, s = result.stats["seconds_per_stage"], result.stats
    loop = sum(st[k] for k in LOOP)
    peak = torch.cuda.max_memory_allocated() / 2**30 if str(prior.device).startswith("cuda") else float("nan")
    return {"case": label, "device": _device_name(str(prior.device)), "fit_s": st["fit"], "fit_steps": s["fit_steps"],
            "psnr": s["fit_psnr_db"], "texel_psnr": s["fit_texel_psnr_db"], "edit_s": loop,
            "step_s": loop / max(s["steps_run"], 1), "unet_s": st["unet"] / max(s["steps_run"], 1),
            "bake_s": st["bake"], "wall_s": wall, "peak": peak}


def print_speed(rows: list[dict]) -> None:
    print("\n## Edit task stages (seconds; per-step columns are means over the edit steps)\n")
    head = ["case", "device", "fit s", "fit steps", "render PSNR dB", "texel PSNR dB", "edit s", "s/step",
            "UNet s/step", "bake s", "wall s", "peak GiB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["case"], r["device"], f"{r['fit_s']:.1f}", str(r["fit_steps"]), f"{r['psnr']:.1f}",
                 f"{r['texel_psnr']:.1f}", f"{r['edit_s']:.1f}", f"{r['step_s']:.3f}", f"{r['unet_s']:.3f}",
                 f"{r['bake_s']:.1f}", f"{r['wall_s']:.1f}", "—" if np.isnan(r["peak"]) else f"{r['peak']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def comparison(prior, steps: int, seeds: tuple[int, ...]) -> None:
    print(f"\n## ω2 > 0 (Eq. 11) vs ω2 = 0 (plain target CSD): red/white stripes → 'a blue striped sphere', "
          f"{steps} steps, preserve 0.35\n")
    print("| ω2 | seed | blue views (of 8) | layout correlation | seconds |")
    print("|---|---|---|---|---|")
    arrays = _striped()
    mesh = Mesh(arrays["vertices"], arrays["faces"].astype(np.int64), arrays["uvs"])
    before = mesh_turntable(mesh, arrays["texture"], arrays["uvs"], size=128)
    for seed in seeds:
        for omega2 in (1.0, 0.0):
            result, wall = run(prior, arrays, steps, omega2=omega2, seed=seed)
            after = mesh_turntable(mesh, result.texture, result.uvs, size=128)
            print(f"| {omega2:g} | {seed} | {views_in_family(after, 'blue')} | "
                  f"{layout_correlation(before, after):.3f} | {wall:.0f} |")


def cuda_rows(steps: int) -> list[dict]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from guidance import SD15_UNET, SD15_VAE  # the published SD 1.5 configs (see bench/guidance.py)

    from engine.priors.stable_diffusion import StableDiffusionPrior
    from engine.testing.tiny_models import sd_ddim_scheduler

    dev, dt = torch.device("cuda"), torch.float16
    prior = StableDiffusionPrior(
        name="sd15-arch", unet=UNet2DConditionModel(**SD15_UNET), vae=AutoencoderKL(**SD15_VAE),
        scheduler=sd_ddim_scheduler(),
        text=None, device=dev, dtype=dt)
    prior.encode_prompts = lambda prompts: torch.randn(len(prompts), 77, 768, device=dev)  # no CLIP weights
    rows = []
    for batch in (1, 4):
        rows.append(speed_row(f"SD 1.5 arch, Spot, 512² render, batch {batch}", prior, _spot(), steps,
                              target="a blue cow", edit="a spotted cow", batch_size=batch, render_size=512,
                              device="cuda"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--skip-comparison", action="store_true")
    parser.add_argument("--cuda-only", action="store_true", help="only the CUDA rows (a GPU machine's short run)")
    args = parser.parse_args()
    if args.cuda_only:
        print_speed(cuda_rows(min(args.steps, 50)))
        return
    toy = load_prior("toy", device="cpu")
    rows = [speed_row("toy, Spot (1024² texture), batch 4", toy, _spot(), args.steps,
                      target="a blue plain sphere", edit="a red plain sphere"),
            speed_row("toy, striped sphere (256²), batch 4", toy, _striped(), args.steps)]
    if torch.cuda.is_available() and not args.cpu_only:
        rows += cuda_rows(min(args.steps, 50))
    print_speed(rows)
    if not args.skip_comparison:
        comparison(toy, args.steps, tuple(args.seeds))


if __name__ == "__main__":
    main()
