"""Text to mesh (paper §5.1, Magic3D-style): coarse NeRF with CSD → DMTet refinement → clean-up → UV bake.

Stages, each named in progress events: "loading" → "coarse" (generate_coarse) → "refine" (generate_refine;
    skipped
with `refine="none"`, which extracts the coarse density with marching cubes instead) → "baking" (largest
connected component, quadric decimation to the face budget, xatlas unwrap and seam-padded bake of the albedo,
as the texture task bakes) → "done". The mesh comes back in Blender's frame (Z up), centred, its longest side
`size` metres.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from csd_blender.protocol.params import GenerateParams

from ..device_info import resolve_device
from ..errors import EngineError, ErrorCode, RequestError
from ..fields.density_field import DensityFieldConfig
from ..guidance import build_guidance
from ..guidance.view_prompts import ViewPrompts
from ..images import png_bytes, sheet
from ..mesh import Mesh
from ..mesh.cleanup import decimate, largest_component, marching_cubes, non_manifold_edges
from ..registry import TASKS
from .base import ProgressEvent, ProgressFn, StopFn, TaskSpec
from .common.bake import bake_field
from .common.outputs import image_sha256
from .common.turntable import TURNTABLE_VIEWS, mesh_turntable
from .generate_coarse import CoarseConfig, run_coarse
from .generate_quality import generate_quality_for
from .generate_refine import RefineConfig, run_refine
from .generate_shading import shape_prompt

logger = logging.getLogger(__name__)

RADIUS = 1.0  # the fields' bound, [-1, 1]^3 (csd-if.yaml radius 1.0)
MC_RESOLUTION = 96  # marching-cubes grid of --refine none


@dataclass
class GenerateJob:
    """A validated generate job (no arrays travel with it).

    Attributes:
        params: the job's parameters.
    """

    params: GenerateParams


@dataclass
class GenerateResult:
    """What a generate job produces.

    Attributes:
        mesh: the new mesh (Z up, centred, longest side `params.size`) with per-corner `uvs`.
        texture: (S, S, 3) float32 in [0, 1], top row first.
        turntable: (2·R, 4·R, 3) float32 sheet of 8 views.
        params: resolved parameters (every default filled in).
        stats: per-stage steps and seconds, samples per ray, faces, non-manifold edges, hashes.
    """

    mesh: Mesh
    texture: np.ndarray
    turntable: np.ndarray
    params: dict
    stats: dict = field(default_factory=dict)


def make_generate_job(params: GenerateParams, arrays: dict[str, np.ndarray]) -> GenerateJob:
    """Validate parameters into a GenerateJob; arrays are not accepted.

    Args:
        params: validated job parameters (`validate()` runs at the door: the command line and the server's
            admission; the job trusts them).
        arrays: must be empty.
    """
    if arrays:
        name = sorted(arrays)[0]
        raise RequestError(name, "the generate task takes no arrays")
    return GenerateJob(params=params)


def resolve_generate_params(
    params: GenerateParams, family: str, resolution: int, refine_resolution: int
) -> GenerateParams:
    """Fill every `None` from the quality preset and the priors' sizes, so job.json reproduces the run."""
    q = generate_quality_for(family, params.quality)
    pick = lambda value, default: default if value is None else value
    return dataclasses.replace(
        params,
        steps_coarse=pick(params.steps_coarse, q.steps_coarse),
        steps_refine=pick(params.steps_refine, q.steps_refine if params.refine != "none" else 0),
        batch_size=pick(params.batch_size, q.batch_size),
        coarse_size=pick(params.coarse_size, resolution),
        refine_size=pick(params.refine_size, refine_resolution),
        samples_per_ray=pick(params.samples_per_ray, q.samples_per_ray),
        tet_resolution=pick(params.tet_resolution, q.tet_resolution),
        texture_size=pick(params.texture_size, q.texture_size),
        isosurface_threshold=pick(params.isosurface_threshold, q.isosurface_threshold),
    )


def _prompt_sets(prior, prompt: str, negative: str, toy: bool) -> tuple[ViewPrompts, ViewPrompts]:
    """(albedo prompts, geometry prompts) for a prior: the toy prior's geometry batches see the shape words only
    and it has no view words; real priors get view-dependent prompts (with Perp-Neg in the coarse stage)."""
    if toy:
        from ..toy.vocabulary import SHAPES

        return (ViewPrompts(prior, prompt, negative, view_dependent=False),
                ViewPrompts(prior, shape_prompt(prompt, SHAPES), negative, view_dependent=False))
    prompts = ViewPrompts(prior, prompt, negative)
    return prompts, prompts


def _to_output_frame(mesh: Mesh, size: float) -> Mesh:
    """Centre the mesh's bounding box at the origin and scale its longest side to `size`."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    scale = size / max(float((hi - lo).max()), 1e-8)
    return dataclasses.replace(mesh, vertices=((mesh.vertices - (lo + hi) / 2) * scale).astype(np.float32))


def _density_grid(field_model, resolution: int, device) -> np.ndarray:
    axis = torch.linspace(-RADIUS, RADIUS, resolution, device=device)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    with torch.no_grad():
        dens = torch.cat([field_model.density(pts[i : i + 65536]) for i in range(0, len(pts), 65536)])
    return dens.reshape(resolution, resolution, resolution).cpu().numpy()


def run_generate(
    job: GenerateJob, prior=None, progress: ProgressFn | None = None, should_stop: StopFn | None = None
) -> GenerateResult:
    """Run a generate job (stages in the module docstring).

    Args:
        job: from `make_generate_job`.
        prior: a loaded Prior for both stages; None loads `params.model` (and `params.refine_model` when set).
        progress: called with ProgressEvents whose `stage` is "loading", "coarse", "refine", "baking", "done".
        should_stop: checked before every step of both stages.

    Raises:
        CancelledError: stopped by `should_stop`.
        EngineError: the surface could not be extracted (EMPTY_RESULT-like: no density above the threshold),
            a bad prompt, a missing model, …
    """
    from ..priors import load_prior

    t_start = time.perf_counter()
    emit = progress or (lambda event: None)
    stop = should_stop or (lambda: False)
    p = job.params
    device = resolve_device(p.device)
    emit(ProgressEvent("loading", 0, 0, elapsed_s=time.perf_counter() - t_start))
    if prior is None:
        prior = load_prior(p.model, device=device)
    refine_prior = (
        prior
        if not p.refine_model or p.refine_model == p.model
        else load_prior(p.refine_model, device=prior.device)
    )
    device = prior.device
    toy = prior.family == "toy"
    p = resolve_generate_params(p, prior.family, prior.resolution, refine_prior.resolution)
    q = generate_quality_for(prior.family, p.quality)
    seed = p.seed
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)

    coarse_preset = "csd-toy" if toy else "csd-if"
    coarse_guidance = build_guidance(coarse_preset, total_steps=p.steps_coarse)
    prompts, geo_prompts = _prompt_sets(prior, p.prompt, p.negative_prompt, toy)
    field_cfg = DensityFieldConfig(
        radius=RADIUS,
        n_levels=q.n_levels,
        log2_hashmap_size=q.log2_hashmap_size,
        per_level_scale=1.3703509847201236 if q.n_levels == 12 else 1.45,
    )
    coarse_cfg = CoarseConfig(
        steps=p.steps_coarse,
        batch_size=p.batch_size,
        size=p.coarse_size,
        samples_per_ray=p.samples_per_ray,
        learning_rate=p.learning_rate,
        field=field_cfg,
        toy=toy,
    )
    emit(ProgressEvent("coarse", 0, p.steps_coarse, elapsed_s=time.perf_counter() - t_start))
    t0 = time.perf_counter()
    coarse = run_coarse(
        coarse_cfg,
        prior,
        coarse_guidance,
        prompts,
        geo_prompts,
        gen,
        noise_gen,
        seed,
        emit,
        stop,
        t_start,
        p.progress_every,
        p.preview_size,
    )
    seconds = {"coarse": time.perf_counter() - t0}
    field_model = coarse.field

    t0 = time.perf_counter()
    refine_steps, refine_seconds = 0, {}
    if p.refine == "none":
        mesh = marching_cubes(
            _density_grid(field_model, MC_RESOLUTION, device), p.isosurface_threshold, RADIUS
        )
        refine_preset = None
    else:
        refine_toy = refine_prior.family == "toy"
        refine_preset = "csd-toy" if refine_toy else ("csd-sd-refine" if refine_prior.latent else "csd-if")
        refine_guidance = build_guidance(refine_preset, total_steps=max(p.steps_refine, 1))
        r_prompts, r_geo = (
            (prompts, geo_prompts)
            if refine_prior is prior
            else _prompt_sets(refine_prior, p.prompt, p.negative_prompt, refine_toy)
        )
        refine_cfg = RefineConfig(
            steps=p.steps_refine,
            batch_size=q.refine_batch,
            size=p.refine_size,
            tet_resolution=p.tet_resolution,
            isosurface_threshold=p.isosurface_threshold,
            geometry=p.refine == "geometry",
            toy=refine_toy,
            learning_rate=p.learning_rate / 2,
            geometry_learning_rate=p.learning_rate,
        )
        emit(ProgressEvent("refine", 0, p.steps_refine, elapsed_s=time.perf_counter() - t_start))
        refined = run_refine(
            refine_cfg,
            field_model,
            refine_prior,
            refine_guidance,
            r_prompts,
            r_geo,
            gen,
            noise_gen,
            emit,
            stop,
            t_start,
            p.progress_every,
            p.preview_size,
        )
        refine_steps, refine_seconds = refined.steps_run, refined.seconds
        mesh = Mesh(
            refined.vertices.cpu().numpy().astype(np.float32), refined.faces.cpu().numpy().astype(np.int64)
        )
    seconds["refine"] = time.perf_counter() - t0
    if len(mesh.faces) == 0:
        raise EngineError(
            ErrorCode.BAD_REQUEST,
            f"isosurface_threshold: no surface: the coarse density never exceeds "
            f"{p.isosurface_threshold}; lower it or run more coarse steps",
            field="isosurface_threshold",
        )

    emit(ProgressEvent("baking", 0, 0, elapsed_s=time.perf_counter() - t_start))
    t0 = time.perf_counter()
    raw_faces = len(mesh.faces)
    # decimation can pinch a thin part off: keep the largest component after it too (one connected mesh)
    mesh = largest_component(decimate(largest_component(mesh), p.face_budget))
    baked = bake_field(field_model.albedo, mesh, mesh, p.texture_size, device, should_stop=stop)
    mesh = _to_output_frame(mesh.with_uvs(baked.uvs), p.size)
    turntable = sheet(mesh_turntable(mesh, baked.image, baked.uvs, size=256, views=TURNTABLE_VIEWS), cols=4)
    seconds["bake"] = time.perf_counter() - t0
    stats = {
        "steps_coarse": coarse.steps_run,
        "steps_refine": refine_steps,
        "seconds": round(time.perf_counter() - t_start, 3),
        "seconds_per_stage": {k: round(v, 3) for k, v in seconds.items()},
        "coarse_seconds": {k: round(v, 3) for k, v in coarse.seconds.items()},
        "refine_seconds": {k: round(v, 3) for k, v in refine_seconds.items()},
        "samples_per_ray": [round(v, 2) for v in coarse.samples_per_ray],
        "occupied_fraction": round(coarse.occupancy.occupied_fraction(), 4),
        "extracted_faces": raw_faces,
        "faces": len(mesh.faces),
        "vertices": len(mesh.vertices),
        "non_manifold_edges": non_manifold_edges(mesh),
        "guidance_presets": [coarse_preset, refine_preset],
        "device": str(device),
        "prior": prior.name,
        "prior_family": prior.family,
        "mesh_sha256": image_sha256(
            np.concatenate([mesh.vertices.ravel(), mesh.faces.ravel().astype(np.float32)])
        ),
        "texture_sha256": image_sha256(baked.image),
    }
    emit(ProgressEvent("done", 0, 0, elapsed_s=time.perf_counter() - t_start))
    return GenerateResult(
        mesh=mesh, texture=baked.image, turntable=turntable, params=p.to_dict(), stats=stats
    )


def pack_generate_result(result: GenerateResult) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) for the wire: vertices (V,3), faces (F,3) i32, uvs (F,3,2), texture, turntable PNG."""
    meta = {"params": result.params, "stats": result.stats}
    arrays = {
        "vertices": np.ascontiguousarray(result.mesh.vertices, dtype=np.float32),
        "faces": np.ascontiguousarray(result.mesh.faces, dtype=np.int32),
        "uvs": np.ascontiguousarray(result.mesh.uvs, dtype=np.float32),
        "texture": np.ascontiguousarray(result.texture, dtype=np.float32),
        "turntable_png": np.frombuffer(png_bytes(result.turntable), dtype=np.uint8),
    }
    return meta, arrays


GENERATE_SPEC = TASKS.register("generate")(
    TaskSpec(
        name="generate",
        params_cls=GenerateParams,
        make_job=make_generate_job,
        run=run_generate,
        pack_result=pack_generate_result,
        prior_key=lambda job: (job.params.model, ()),
    )
)
