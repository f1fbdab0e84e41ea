"""The shape IoU benchmark of text to mesh (`bench/generate.py --iou`): `generate` per shape x guidance x seed on the
exact prior (engine/testing/exact_prior.py) or any prior, then the 8-view silhouette IoU with every reference shape.
"""

from __future__ import annotations

import contextlib
import time

import torch
import trimesh

from csd_blender.protocol.params import GenerateParams
from engine.tasks.generate import make_generate_job, run_generate


def _row(cells) -> str:
    return " | ".join(f"{c:>12}" if not isinstance(c, str) else f"{c:<12}" for c in cells)


PROMPT_COLOURS = {"cube": "red", "sphere": "blue", "cone": "green", "torus": "yellow", "cylinder": "orange",
                  "capsule": "purple"}


@contextlib.contextmanager
def sds_at_equal_steps(scale: float):
    """While active, `generate` runs SDS where it would run a CSD preset: the preset's t range, weighting and
    gradient normalisation, classifier-free scale `scale`, no negative prompt (the SDS baseline at equal steps)."""
    from engine.guidance import build_guidance as real_build
    from engine.guidance.presets import get_preset
    from engine.guidance.sds import SDSConfig
    import engine.tasks.generate as gen_task

    def build(name, total_steps=None, **overrides):
        csd = get_preset(name) if isinstance(name, str) else name
        sds = SDSConfig(name=f"sds-like-{csd.name}", guidance_scale=scale, t_min=csd.t_min, t_max=csd.t_max,
                        weighting=csd.weighting, grad_mode=csd.grad_mode, grad_clip=csd.grad_clip,
                        negative_prompt="", reference_steps=csd.reference_steps)
        return real_build(sds, total_steps=total_steps, **overrides)

    gen_task.build_guidance = build
    try:
        yield
    finally:
        gen_task.build_guidance = real_build


def iou_bench(prior_name: str, guidances: list[str], shapes: list[str], quality: str, seeds: list[int],
              sds_scale: float) -> list[dict]:
    """`generate` per shape × guidance × seed; prints steps/s per stage and the IoU table; returns the rows."""
    from engine.priors import load_prior
    from engine.testing.exact_prior import ExactPrior, shape_ious

    exact = prior_name == "exact"
    prior = ExactPrior() if exact else load_prior(prior_name, device="cpu")
    refs = ExactPrior().shapes if exact else tuple(dict.fromkeys(("cube", "sphere", "cone", "torus", *shapes)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, prior {prior.name} "
          f"(family {prior.family}), quality {quality}")
    print(_row(["shape", "guidance", "seed", "coarse st/s", "refine st/s", "seconds", "parts", "watertight"]))
    rows = []
    for shape in shapes:
        prompt = f"a {shape}" if exact else f"a {PROMPT_COLOURS.get(shape, 'red')} {shape}"
        for guidance in guidances:
            for seed in seeds:
                params = GenerateParams(prompt=prompt, quality=quality, device="cpu", seed=seed)
                with contextlib.ExitStack() as stack:
                    if exact:
                        stack.enter_context(prior.watching())
                    if guidance == "sds":
                        stack.enter_context(sds_at_equal_steps(sds_scale))
                    t0 = time.perf_counter()
                    result = run_generate(make_generate_job(params, {}), prior=prior)
                    wall = time.perf_counter() - t0
                m = result.mesh
                mesh = trimesh.Trimesh(m.vertices, m.faces, process=True)
                ious = shape_ious(m.vertices, m.faces, refs)
                st, sec = result.stats, result.stats["seconds_per_stage"]
                row = dict(shape=shape, guidance=guidance, seed=seed, ious=ious,
                           coarse_steps_per_s=st["steps_coarse"] / max(sec["coarse"], 1e-9),
                           refine_steps_per_s=st["steps_refine"] / max(sec["refine"], 1e-9), seconds=wall,
                           parts=len(mesh.split(only_watertight=False)), watertight=bool(mesh.is_watertight))
                rows.append(row)
                print(_row([shape, guidance, seed, f"{row['coarse_steps_per_s']:.2f}",
                            f"{row['refine_steps_per_s']:.2f}", f"{wall:.0f}", row["parts"], str(row["watertight"])]),
                      flush=True)
    print()
    print("| shape | guidance | seed | " + " | ".join(f"IoU {r}" for r in refs) + " | own | next | own is best |")
    print("|---|---|---|" + "---|" * (len(refs) + 3))
    for r in rows:
        own = r["ious"].get(r["shape"], float("nan"))
        nxt = max(v for k, v in r["ious"].items() if k != r["shape"])
        print(f"| {r['shape']} | {r['guidance']} | {r['seed']} | "
              + " | ".join(f"{r['ious'][k]:.3f}" for k in refs) + f" | {own:.3f} | {nxt:.3f} | {own > nxt} |")
    return rows
