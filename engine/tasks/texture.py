"""Texture from text on a fixed mesh: optimise a 3D colour field with CSD from many views, then bake it to UVs.

The loop (DESIGN §4.4): sample cameras (the user's rig with jitter, or orbit ranges) → rasterize → query the
`TextureField` at visible surface points → composite over a random solid background → `prior.to_model_space`
→ guidance (one batched UNet call) → Adam step. Every `progress_every` steps a progress event carries a preview
PNG of a fixed view; `should_stop()` is checked before every step. At the end the field is baked into the mesh's
own UVs (xatlas when it has none) with seam padding, and a turntable sheet of the baked result is rendered.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from csd_blender.protocol.params import TextureParams, check_edit_arrays

from ..device_info import resolve_device
from ..errors import CancelledError, RequestError
from ..fields.texture_field import TextureField, TextureFieldConfig
from ..guidance import build_guidance
from ..guidance.presets import auto_preset
from ..guidance.view_prompts import ViewPrompts, job_negative
from ..images import png_bytes, sheet
from ..mesh import Mesh, ensure_uvs, normalize, validate_mesh
from ..registry import TASKS
from ..render.rig import check_rig
from ..render.surface import depth_and_normal, hit_surface, shade_field
from .base import ProgressEvent, ProgressFn, StopFn, TaskSpec
from .common.backgrounds import solid_backgrounds
from .common.bake import bake_field, bake_field_to_shape
from .common.clock import device_clock
from .common.defaults import fill_defaults
from .common.optim import field_adam
from .common.outputs import image_sha256
from .common.preview import field_preview_png
from .common.region import Region, RegionInput
from .common.turntable import TURNTABLE_VIEWS, mesh_turntable, render_turntable
from .common.views import OrbitRanges, ViewSampler
from .quality import quality_for

logger = logging.getLogger(__name__)

@dataclass
class TextureJob:
    """A validated texture job: parameters, the mesh in world space, an optional camera rig.

    Attributes:
        params: the job's parameters.
        mesh: world-space mesh (faces triangulated, degenerate faces dropped).
        c2w: (N, 4, 4) float32 rig camera-to-world matrices, or None for orbit sampling.
        intrinsics: (N, 6) float32 rows [fx, fy, cx, cy, width, height], or None.
        dropped_faces: degenerate faces removed by validation.
        region: the region mask (`face_mask` / `texel_mask`), or None to texture the whole object.
        texture: (H, W, 3|4) float32 copy of the object's texture (region jobs only): kept outside the region.
    """

    params: TextureParams
    mesh: Mesh
    c2w: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    dropped_faces: int = 0
    region: RegionInput | None = None
    texture: np.ndarray | None = None


@dataclass
class TextureResult:
    """What a texture job produces.

    Attributes:
        texture: (S, S, 3) float32 sRGB in [0, 1], top row first (row 0 ↔ v = 1).
        uvs: (F, 3, 2) float32 per-corner UVs the texture belongs to.
        unwrapped: True when the engine made the UVs (xatlas), False when the user's were kept.
        mesh: the world-space mesh the UVs index (faces after validation).
        turntable: (2·R, 4·R, 3) float32 sheet of 8 views of the baked texture.
        params: the resolved parameters (every default filled in) — enough to reproduce the run.
        stats: steps run, seconds per stage, the optimisation loop's wall seconds, UNet calls, final loss.
        partial: True when the job was cancelled and `return_partial` asked for what existed.
    """

    texture: np.ndarray
    uvs: np.ndarray
    unwrapped: bool
    mesh: Mesh
    turntable: np.ndarray
    params: dict
    stats: dict = field(default_factory=dict)
    partial: bool = False


def make_texture_job(params: TextureParams, arrays: dict[str, np.ndarray]) -> TextureJob:
    """Validate parameters and arrays into a TextureJob (raises EngineError naming the problem).

    Args:
        params: validated job parameters (`validate()` runs at the door: the command line and the server's
            admission; the job trusts them).
        arrays: "vertices" (V, 3), "faces" (F, 3), optional "uvs" (F, 3, 2), "c2w" (N, 4, 4), "intrinsics" (N, 6);
            a region job "face_mask" (F,) or "texel_mask" (H, W) and, to keep the rest of a textured object, its
            "texture" (H, W, 3|4) with "uvs" (csd_blender/protocol/params/region.py).
    """
    for name in ("vertices", "faces"):
        if name not in arrays:
            raise RequestError(name, "is required")
    mesh, dropped = validate_mesh(arrays["vertices"], arrays["faces"], arrays.get("uvs"))
    check_rig(arrays)
    c2w, intr = arrays.get("c2w"), arrays.get("intrinsics")
    if c2w is not None:
        c2w, intr = np.asarray(c2w, dtype=np.float32), np.asarray(intr, dtype=np.float32)
    texture = arrays.get("texture")
    region = RegionInput(arrays, None if texture is None else tuple(texture.shape)) or None
    if texture is not None:
        if region is None:
            raise RequestError("texture", "an input texture is only used by a region job (face_mask or texel_mask): "
                                          "a whole-object texture job paints everything anew")
        check_edit_arrays(arrays)   # a texture with UVs that fit it, as an edit needs
        texture = np.array(texture, dtype=np.float32, copy=True)
    return TextureJob(params=params, mesh=mesh, c2w=c2w, intrinsics=intr, dropped_faces=dropped, region=region,
                      texture=texture)


def resolve_params(params: TextureParams, family: str, resolution: int) -> TextureParams:
    """Fill every `None` default from the quality preset and the prior, so job.json reproduces the run."""
    q = quality_for(family, params.quality)
    return fill_defaults(params, steps=q.steps, batch_size=q.batch_size, texture_size=q.texture_size,
                         render_size=max(resolution, 64))


def result_views(result: TextureResult, size: int = 128, views: int = TURNTABLE_VIEWS) -> np.ndarray:
    """(views, size, size, 3) turntable renders of a result's baked texture on its (normalised) mesh."""
    return mesh_turntable(result.mesh, result.texture, result.uvs, size=size, views=views)


def _region(job: TextureJob, p: TextureParams, device) -> Region | None:
    """The job's Region on its UVs (xatlas ones when the mesh has none): the input texture's size, else the texel
    mask's, else `texture_size`."""
    if job.region is None:
        return None
    uvs, _ = ensure_uvs(job.mesh)
    if job.texture is not None:
        shape = job.texture.shape[:2]
    elif job.region.name == "texel_mask":
        shape = job.region.arrays["texel_mask"].shape
    else:
        shape = (p.texture_size, p.texture_size)
    return job.region.region(uvs, shape, p.mask_border, job.texture, device)


def run_texture(job: TextureJob, prior=None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, profile: bool = False) -> TextureResult:
    """Run a texture job to completion (or cancellation).

    Args:
        job: a TextureJob from `make_texture_job`.
        prior: a loaded Prior; None loads `job.params.model` (cached across jobs by `load_prior`).
        progress: called with ProgressEvent: "loading", then "optimising" every `progress_every` steps (and at
            the last step) with a preview PNG, then "baking", then "done".
        should_stop: checked before every step; when it returns True the job raises CancelledError (or, with
            `return_partial`, bakes and returns what exists with `partial=True`).
        profile: synchronise the device before every stage's clock (exact per-stage CUDA times in
            `stats["seconds_per_stage"]`, at the cost of the host running ahead of the GPU); off, the stages
            are host times and queued GPU work is counted where the host next waits for it.

    Raises:
        CancelledError: stopped by `should_stop` (without `return_partial`).
        EngineError: bad prompt for the prior, missing model, …
    """
    from ..priors import load_prior

    t_start = time.perf_counter()
    emit = progress or (lambda event: None)
    stop = should_stop or (lambda: False)
    p = job.params
    device = resolve_device(p.device)
    emit(ProgressEvent("loading", 0, p.steps or 0, elapsed_s=time.perf_counter() - t_start))
    if prior is None:
        prior = load_prior(p.model, device=device, controlnets=tuple(p.controlnets),
                           controlnet_scales=list(p.controlnet_scales) or None)
    device = prior.device
    p = resolve_params(p, prior.family, prior.resolution)
    q = quality_for(prior.family, p.quality)
    preset = auto_preset(prior) if p.guidance == "auto" else p.guidance
    guidance = build_guidance(preset, total_steps=p.steps, **p.guidance_overrides)
    # View-dependent prompting as in every official CSD config (when the prior knows the view words).
    negative = job_negative(prior, p.negative_prompt, guidance.config.negative_prompt)
    prompts = ViewPrompts(prior, p.prompt, negative)

    mesh_n, norm = normalize(job.mesh)
    verts = torch.tensor(mesh_n.vertices, dtype=torch.float32, device=device)
    faces = torch.tensor(mesh_n.faces, dtype=torch.int32, device=device)
    face_normals = torch.nn.functional.normalize(torch.cross(verts[faces[:, 1].long()] - verts[faces[:, 0].long()],
                                                             verts[faces[:, 2].long()] - verts[faces[:, 0].long()],
                                                             dim=1), dim=1)
    region = _region(job, p, device)
    gen = torch.Generator().manual_seed(p.seed)
    noise_gen = torch.Generator(device=device).manual_seed(p.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        field_model = TextureField(TextureFieldConfig(max_resolution=q.max_resolution,
                                                      log2_hashmap_size=q.log2_hashmap_size)).to(device)
    opt = field_adam(field_model.parameters(), lr=p.learning_rate)
    ranges = OrbitRanges.from_params(p)
    views = ViewSampler(region.aimed(ranges, mesh_n) if region is not None else ranges, p.render_size, gen,
                        rig=(job.c2w, job.intrinsics) if job.c2w is not None else None, norm=norm,
                        jitter=p.camera_jitter)

    timings = dict.fromkeys(("render", "to_model_space", "unet", "backward", "optimiser", "bake"), 0.0)
    unet_calls, loss_value, last_loss, partial, steps_run = 0, float("nan"), None, False, 0
    emit(ProgressEvent("optimising", 0, p.steps, elapsed_s=time.perf_counter() - t_start))
    clock = device_clock(device, profile)
    t_loop = time.perf_counter()
    for step in range(p.steps):
        if stop():
            if not p.return_partial:
                raise CancelledError(f"texture job cancelled at step {step}/{p.steps}")
            partial = True
            break
        t0 = clock()
        cams = views.sample(p.batch_size)
        step_prompts = prompts.for_cameras(cams.c2w)  # on the host's cameras: no device sync
        cams = cams.to(device)
        hits = hit_surface(cams, verts, faces)
        image = shade_field(field_model, hits, solid_backgrounds(p.background, p.batch_size, gen).to(device))
        if region is not None:  # the object's own colours outside the region: only the region is optimised
            image = region.composite(image, hits)
        control = None
        if prior.controlnets:
            depth, normal = depth_and_normal(cams, hits, face_normals)
            control = {"depth": depth.permute(0, 3, 1, 2), "normal": normal.permute(0, 3, 1, 2)}
        t1 = clock()
        x = prior.to_model_space(image.permute(0, 3, 1, 2), generator=noise_gen)
        t2 = clock()
        out = guidance(prior, x, step_prompts, step, control=control, generator=noise_gen)
        t3 = clock()
        opt.zero_grad(set_to_none=True)
        seen = out.loss.requires_grad  # False when no view of this batch hit the mesh (tiny in a wide view)
        if seen:
            out.loss.backward()
        t4 = clock()
        if seen:
            opt.step()
        t5 = clock()
        for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            timings[key] += dt
        unet_calls += out.unet_calls
        last_loss = out.raw_loss  # the applied loss is constant under unit-L2 presets
        steps_run = step + 1
        if steps_run % p.progress_every == 0 or steps_run == p.steps:
            loss_value = float(last_loss)  # the only host sync for the loss: when it is reported
            elapsed = time.perf_counter() - t_start
            rate = (time.perf_counter() - t_loop) / steps_run
            emit(ProgressEvent("optimising", steps_run, p.steps, loss_value, elapsed, rate * (p.steps - steps_run),
                               field_preview_png(field_model, verts, faces, p.preview_size)))

    loop_seconds = device_clock(device, True)() - t_loop  # waits for the last step's queued work
    if last_loss is not None:
        loss_value = float(last_loss)
    emit(ProgressEvent("baking", steps_run, p.steps, loss_value, time.perf_counter() - t_start, 0.0))
    t0 = time.perf_counter()
    # a cancel lands between bake bands too, unless the job was asked to bake what it has when cancelled
    bake_stop = None if p.return_partial else stop
    if region is None:
        baked = bake_field(field_model, job.mesh, mesh_n, p.texture_size, device, should_stop=bake_stop)
    else:
        baked = bake_field_to_shape(field_model, job.mesh, mesh_n, region.weight.shape, device, should_stop=bake_stop)
        baked = dataclasses.replace(baked, image=region.blend(baked.image))
    texture, uvs, unwrapped = baked.image, baked.uvs, baked.unwrapped
    timings["bake"] = time.perf_counter() - t0
    turntable = sheet(render_turntable(mesh_n, texture, uvs), cols=4)
    stats = {
        "steps_run": steps_run, "seconds": round(time.perf_counter() - t_start, 3),
        "loop_seconds": round(loop_seconds, 4),
        "seconds_per_stage": {k: round(v, 4) for k, v in timings.items()}, "unet_calls": unet_calls,
        "final_loss": loss_value, "guidance_preset": preset, "device": str(device), "prior": prior.name,
        "prior_family": prior.family, "view_prompts": prompts.view_dependent, "negative_prompt": negative,
        "dropped_faces": job.dropped_faces,
        "texture_sha256": image_sha256(texture), **(region.stats() if region is not None else {}),
    }
    emit(ProgressEvent("done", steps_run, p.steps, loss_value, time.perf_counter() - t_start, 0.0))
    return TextureResult(texture=texture, uvs=uvs, unwrapped=unwrapped, mesh=job.mesh,
                         turntable=turntable, params=p.to_dict(), stats=stats, partial=partial)


def pack_texture_result(result: TextureResult) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) for the wire: texture, uvs and the turntable PNG bytes as uint8."""
    meta = {"params": result.params, "unwrapped": result.unwrapped, "partial": result.partial,
            "stats": result.stats}
    arrays = {"texture": np.ascontiguousarray(result.texture, dtype=np.float32),
              "uvs": np.ascontiguousarray(result.uvs, dtype=np.float32),
              "turntable_png": np.frombuffer(png_bytes(result.turntable), dtype=np.uint8)}
    return meta, arrays


TEXTURE_SPEC = TASKS.register("texture")(TaskSpec(
    name="texture", params_cls=TextureParams, make_job=make_texture_job, run=run_texture,
    pack_result=pack_texture_result,
    prior_key=lambda job: (job.params.model, tuple(job.params.controlnets)),
))
